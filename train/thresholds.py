"""Per-label decision thresholds for multi-label tasks: tuned on validation, saved with the model.

`thresholds.json` in a model folder holds {task: {label: threshold}}, e.g.
{"topics": {"summitry": 0.35, "sanctions": 0.5, ...}}; `Classifier.from_pretrained` reads it
(train.model_folder.load_thresholds, which names the file if it is not valid) and uses 0.5 for any
label it does not list.
"""

import json
import os
from pathlib import Path

import numpy as np

from train.labels import MULTI, LabelSchema
from train.model_folder import THRESHOLDS_FILE


def threshold_grid(start: float = 0.05, stop: float = 0.95, step: float = 0.05) -> np.ndarray:
    """Candidate thresholds start, start+step, ..., stop (rounded, so 0.5 is exactly 0.5)."""
    count = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(count), 6)


def tune(schema: LabelSchema, gold: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> dict:
    """For every label of every multi-label task, the grid value with the highest F1 (scikit-learn's
    f1_score) on these examples; among equally good values, the one closest to 0.5.
    `gold` is the multi-hot/one-hot target matrix [n, outputs] and `probs` the scores beside it.
    With 0.5 in the grid, no label's F1 can fall below its F1 at 0.5."""
    from sklearn.metrics import f1_score

    tuned = {}
    for task in schema.tasks:
        if task.kind != MULTI:
            continue
        tuned[task.name] = {}
        for k, label in enumerate(task.labels):
            column = task.start + k
            f1 = np.array([f1_score(gold[:, column], probs[:, column] >= cut, zero_division=0) for cut in grid])
            best = np.flatnonzero(np.isclose(f1, f1.max()))
            tuned[task.name][label] = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
    return tuned


def save(model_dir: Path, thresholds: dict) -> Path:
    """Write `thresholds.json` atomically (a temporary file in the same folder, then os.replace), into
    the folder a `latest` link points at."""
    folder = Path(model_dir).resolve()
    path = folder / THRESHOLDS_FILE
    tmp = folder / f".{THRESHOLDS_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(thresholds, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
