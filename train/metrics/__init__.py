"""Scores of one system on one split, computed by the `evaluate` metric modules in this folder.

Each module (topic_scores/, stance_scores/, calibration_error/) is an `evaluate.Metric` built on
scikit-learn, loaded by path, so nothing is fetched from the hub:

    from train.metrics import task_scores
    task_scores(schema, gold, probs, thresholds)   # {"topics": {...}, "stance": {...}}
    scores_at_half(schema, gold, probs)            # {"topics_macro_f1": ..., "macro_f1": ...}, as training selects

`gold` is the schema's target matrix [n, outputs] (multi-hot / one-hot per task) and `probs` the
scores beside it; multi-label tasks are decided by per-label thresholds, single-label by argmax.
"""

import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from train.labels import MULTI, LabelSchema

METRICS_DIR = Path(__file__).resolve().parent
MODULE_FOR_KIND = {MULTI: "topic_scores", "single_label": "stance_scores"}


@lru_cache(maxsize=None)
def load_metric(name: str):
    """One of this folder's metric modules, loaded offline by path (once per process). Its scratch
    files go to the system's temporary folder; results stay in memory."""
    import evaluate

    cache = Path(tempfile.gettempdir()) / "peninsula-evaluate"
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True, cache_dir=str(cache))


def gold_matrix(schema: LabelSchema, records) -> np.ndarray:
    return np.array([schema.encode(r) for r in records], dtype=int).reshape(len(records), schema.num_outputs)


def decide(schema: LabelSchema, probs: np.ndarray, thresholds: dict | None = None) -> np.ndarray:
    """0/1 decisions [n, outputs]: score >= the label's threshold (0.5 where none), argmax per
    single-label task; the same rule as `Classifier.decode`."""
    thresholds = thresholds or {}
    decisions = np.zeros(probs.shape, dtype=int)
    for task in schema.tasks:
        p = probs[:, task.slice]
        if task.kind == MULTI:
            cuts = np.array([thresholds.get(task.name, {}).get(label, 0.5) for label in task.labels])
            decisions[:, task.slice] = p >= cuts
        else:
            decisions[np.arange(len(p)), task.start + p.argmax(axis=1)] = 1
    return decisions


def as_labels(schema: LabelSchema, decisions: np.ndarray) -> list[dict]:
    """0/1 decisions -> per example {task: [labels]} (multi-label) or {task: label} (single-label)."""
    out = []
    for row in decisions:
        out.append({t.name: [l for l, d in zip(t.labels, row[t.slice]) if d] if t.kind == MULTI
                    else t.labels[int(row[t.slice].argmax())] for t in schema.tasks})
    return out


def scores_at_half(schema: LabelSchema, targets, probs) -> dict:
    """Macro-F1 per task and their mean (`macro_f1`, the model-selection metric), at 0.5: the
    training job's per-epoch score (scikit-learn directly: it runs every epoch and needs no report)."""
    from sklearn.metrics import accuracy_score, f1_score

    out = {}
    for t in schema.tasks:
        gold, p = targets[:, t.slice], probs[:, t.slice]
        if t.kind == MULTI:
            pred = (p >= 0.5).astype(int)
            out[f"{t.name}_macro_f1"] = f1_score(gold, pred, average="macro", zero_division=0)
            out[f"{t.name}_micro_f1"] = f1_score(gold, pred, average="micro", zero_division=0)
        else:
            g, pr = gold.argmax(1), p.argmax(1)
            out[f"{t.name}_macro_f1"] = f1_score(g, pr, average="macro", labels=range(len(t.labels)),
                                                 zero_division=0)
            out[f"{t.name}_accuracy"] = accuracy_score(g, pr)
    out["macro_f1"] = float(np.mean([out[f"{t.name}_macro_f1"] for t in schema.tasks]))
    return {k: float(v) for k, v in out.items()}


def task_scores(schema: LabelSchema, gold: np.ndarray, probs: np.ndarray, thresholds: dict | None = None,
                bootstrap: int = 0, seed: int = 0, confidence: float = 0.95) -> dict:
    """{task name: that task's metric-module result} at the given thresholds."""
    decisions = decide(schema, probs, thresholds)
    out = {}
    for task in schema.tasks:
        metric = load_metric(MODULE_FOR_KIND[task.kind])
        g, d = gold[:, task.slice], decisions[:, task.slice]
        if task.kind != MULTI:
            g, d = g.argmax(axis=1), d.argmax(axis=1)
        out[task.name] = metric.compute(predictions=d.tolist(), references=g.tolist(), labels=list(task.labels),
                                        bootstrap=bootstrap, seed=seed, confidence=confidence)
    return out


def calibration(schema: LabelSchema, gold: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict:
    """Per task: ECE and reliability bins. Multi-label: every (example, label) score against its gold
    0/1; single-label: the predicted class's probability against whether it is right."""
    metric = load_metric("calibration_error")
    out = {}
    for task in schema.tasks:
        g, p = gold[:, task.slice], probs[:, task.slice]
        if task.kind == MULTI:
            scores, outcomes = p.ravel(), g.ravel()
        else:
            scores, outcomes = p.max(axis=1), (p.argmax(axis=1) == g.argmax(axis=1)).astype(int)
        out[task.name] = metric.compute(predictions=scores.tolist(), references=outcomes.tolist(), n_bins=n_bins)
    return out


def headline(schema: LabelSchema, scores: dict) -> dict:
    """The few numbers a comparison table needs, flat: `<task>_macro_f1`, micro-F1 / accuracy, ..."""
    out = {}
    for task in schema.tasks:
        s = scores[task.name]
        keys = ("macro_f1", "micro_f1", "subset_accuracy", "hamming_loss") if task.kind == MULTI \
            else ("macro_f1", "accuracy")
        out.update({f"{task.name}_{k}": s[k] for k in keys})
    return out


def per_language_counts(records) -> list[tuple[str, int]]:
    """(language, paragraphs), most frequent first."""
    counts = Counter(r["lang"] for r in records)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def per_language(schema: LabelSchema, records, gold: np.ndarray, probs: np.ndarray, thresholds: dict) -> dict:
    """{lang: {"paragraphs": n, headline numbers}} for every language in the split, most frequent first."""
    langs = np.array([r["lang"] for r in records])
    out = {}
    for lang, _ in per_language_counts(records):
        rows = langs == lang
        out[lang] = {"paragraphs": int(rows.sum()),
                     **headline(schema, task_scores(schema, gold[rows], probs[rows], thresholds))}
    return out


def confident_errors(schema: LabelSchema, records, gold: np.ndarray, probs: np.ndarray, thresholds: dict,
                     top: int = 20) -> dict:
    """Per task, the `top` wrong decisions the system was surest of. Multi-label: a wrongly added
    label ranks by its score, a missed one by 1 - score; single-label: by the predicted class's
    probability."""
    decisions = decide(schema, probs, thresholds)
    out = {}
    for task in schema.tasks:
        found = []
        for i, record in enumerate(records):
            g, d, p = gold[i, task.slice], decisions[i, task.slice], probs[i, task.slice]
            base = {"id": record["id"], "lang": record["lang"], "text": record["text"]}
            if task.kind == MULTI:
                for k in np.flatnonzero(g != d):
                    found.append({**base, "label": task.labels[k], "error": "added" if d[k] else "missed",
                                  "score": float(p[k]), "confidence": float(p[k] if d[k] else 1 - p[k])})
            elif g.argmax() != d.argmax():
                found.append({**base, "gold": task.labels[g.argmax()], "predicted": task.labels[d.argmax()],
                              "score": float(p.max()), "confidence": float(p.max())})
        out[task.name] = sorted(found, key=lambda e: -e["confidence"])[:top]
    return out
