"""Benchmarks: measurements printed as README tables, not tests (minutes to hours each).

    python -m train.bench.train        # training speed and peak memory (make bench-train)
    python -m train.bench.predict      # inference speed, memory and agreement per path (make bench-predict)
    python -m train.bench.stream       # flat memory while predicting a large JSONL file (make bench-stream)
    python -m train.bench.sib200       # the SIB-200 public benchmark (make bench-sib200)
    python -m train.bench.recipe       # the training-recipe ablation (make bench-recipe)
    python -m train.bench.aggregation  # article stance rules against whole-document readings
"""
