"""Training speed benchmark: samples/s and peak memory of the default recipe on real corpus text.

    python -m train.bench.train                      # one epoch over 480 training paragraphs
    python -m train.bench.train trainer.bf16=false   # any Hydra override of train.yaml

A measurement, not a test: it writes only to a temporary folder and prints one table.
"""

import resource
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from train.fit import fast_bf16, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEFAULTS = ["data.max_train_samples=480", "data.max_eval_samples=128", "trainer.num_train_epochs=1",
            "run_name=bench"]


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[*DEFAULTS, f"paths.models_dir={tmp}/models",
                                          f"paths.work_dir={tmp}/work", *overrides])
        start = time.perf_counter()
        metrics = train(cfg)
        wall = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    bf16 = cfg.trainer.bf16 if cfg.trainer.bf16 != "auto" else f"auto ({fast_bf16()})"
    print("\n| model | max_length | batch | bf16 | frozen embeddings | samples/s | peak memory | wall |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {cfg.model.name} | {cfg.model.max_length} | {cfg.trainer.per_device_train_batch_size} | {bf16} "
          f"| {cfg.model.freeze_word_embeddings} | {metrics['train_samples_per_second']:.1f} "
          f"| {peak_gib:.1f} GiB | {wall:.0f} s |")


if __name__ == "__main__":
    main(sys.argv[1:])
