"""`python -m train` (or `peninsula-train`): fine-tune a model; Hydra overrides as arguments.

    python -m train --help                         # the composed config and every group option
    python -m train trainer.learning_rate=3e-5     # one run -> models/<run_name>, models/latest
    python -m train -m seed=1,2,3                  # a sweep: one model folder per run
"""

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict

from train.data import DataError
from train.fit import train
from train.tracking import TrackingError

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg) -> float:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # runs of one sweep start in the same second
        with open_dict(cfg):
            cfg.run_name = f"{cfg.run_name}_{hydra_cfg.job.num}"
    try:
        metrics = train(cfg)
    except DataError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"training stopped before it started: {len(e.problems)} problem(s) in the data", file=sys.stderr)
        sys.exit(2)
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return metrics["macro_f1"]  # lets a Hydra sweeper optimise it


if __name__ == "__main__":
    main()
