"""Inference speed benchmark: paragraphs/s and peak memory, on the seed paragraphs + the test split.

    python -m train.bench_predict [MODEL_DIR]      # default models/latest

Paths, each timed in its own process (so peak memory is its own):
  pipeline  plain `transformers.pipeline("text-classification", top_k=None)` at its defaults
  fp32      our default: length-sorted, dynamically padded batches of 32 under inference_mode
  int8      the same after dynamic int8 quantization of the Linear layers
  bf16      the same with the weights cast to bfloat16
Prints paragraphs/s, ratios to the pipeline, peak memory, agreement with fp32 and test macro-F1.
A measurement, not a test.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PATHS = ("pipeline", "fp32", "int8", "bf16")


def texts_and_gold():
    from train.data import data_config, load_split, split_paths
    from train.labels import LabelSchema

    cfg = data_config("news")
    schema = LabelSchema(cfg.schema)
    paths = split_paths(cfg)
    seeds = load_split(paths["seeds"], schema)
    test = load_split(paths["test"], schema)
    return [r["text"] for r in seeds + test], test, schema


def measure(path: str, model_dir: str) -> dict:
    import torch

    texts, test, schema = texts_and_gold()
    torch.set_num_threads(torch.get_num_threads())
    if path == "pipeline":
        from transformers import pipeline

        config = json.loads((Path(model_dir) / "config.json").read_text())
        prefix = config.get("text_prefix", "")
        pipe = pipeline("text-classification", model=model_dir, top_k=None, function_to_apply="none")
        start = time.perf_counter()
        out = pipe([prefix + t for t in texts])
        seconds = time.perf_counter() - start
        names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        logits = np.array([[{d["label"]: d["score"] for d in row}[n] for n in names] for row in out])
        probs = schema.probabilities(logits)
    else:
        from train.inference import Classifier

        clf = Classifier.from_pretrained(model_dir, precision=path)
        clf.scores(texts[:8])  # warm-up
        start = time.perf_counter()
        probs, _ = clf.scores(texts)
        seconds = time.perf_counter() - start
    return {"path": path, "paragraphs": len(texts), "seconds": seconds,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "probs": probs.tolist(), "test_from": len(texts) - len(test)}


def macro_f1(schema, probs, records):
    """Test macro-F1 of topics and stance at 0.5, as the training job scores validation."""
    from train.fit import scores_at_half

    scores = scores_at_half(schema, np.array([schema.encode(r) for r in records]), probs)
    return scores["topics_macro_f1"], scores["stance_macro_f1"]


def main(model_dir: str) -> None:
    results = {}
    for path in PATHS:
        run = subprocess.run([sys.executable, "-m", "train.bench_predict", "--one", path, model_dir],
                             capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"{path} failed:\n{run.stderr[-3000:]}")
        results[path] = json.loads(run.stdout.splitlines()[-1])
    _, test, schema = texts_and_gold()
    base = results["pipeline"]
    exact = np.array(results["fp32"]["probs"])
    print(f"\n{base['paragraphs']} paragraphs (seeds + test split), model {model_dir}\n")
    print("| path | paragraphs/s | × pipeline | peak memory | same labels as fp32 | test topic macro-F1 | test stance macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for path in PATHS:
        r = results[path]
        probs = np.array(r["probs"])
        same = np.mean([(a[:4] >= 0.5).tolist() == (b[:4] >= 0.5).tolist() and a[4:].argmax() == b[4:].argmax()
                        for a, b in zip(probs, exact)])
        t, s = macro_f1(schema, probs[r["test_from"]:], test)
        rate = r["paragraphs"] / r["seconds"]
        print(f"| {path} | {rate:.1f} | {rate / (base['paragraphs'] / base['seconds']):.2f} | {r['peak_gib']:.2f} GiB "
              f"| {same:.1%} | {t:.3f} | {s:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "models/latest")
