"""Multi-label topic scores (an `evaluate` metric module, loaded by path, built on scikit-learn).

    topic_scores = evaluate.load("train/metrics/topic_scores")
    topic_scores.compute(predictions=[[1, 0], [0, 0]], references=[[1, 1], [0, 0]], labels=["a", "b"])
    # {"micro_f1": 0.667, "macro_f1": 0.5, "subset_accuracy": 0.5, "hamming_loss": 0.25, ...}
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import (accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support,
                             recall_score)

_DESCRIPTION = """Per-label precision, recall, F1 and support; micro and macro averages; subset
accuracy; Hamming loss; the share of examples with no gold label that are predicted empty; and an
optional percentile-bootstrap confidence interval on macro-F1. Labels no example has and no
prediction claims score 0 (scikit-learn's zero_division=0)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: multi-hot rows (0/1), one per example, one column per label.
    references: gold multi-hot rows of the same shape.
    labels: label names for the columns (default "0", "1", ...).
    bootstrap: number of resamples for the macro-F1 interval (0: none).
    seed: seed of the resampling.
    confidence: the interval's coverage (0.95: the 2.5th to 97.5th percentile).
Returns:
    per_label {name: {precision, recall, f1, support}}, micro_/macro_ precision, recall and f1,
    subset_accuracy, hamming_loss, empty_gold (count), empty_kept (share; None when empty_gold is 0),
    macro_f1_ci ([low, high] or None).
"""


class TopicScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int32")),
                                        "references": datasets.Sequence(datasets.Value("int32"))}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#multilabel-ranking-metrics"])

    def _compute(self, predictions, references, labels=None, bootstrap=0, seed=0, confidence=0.95):
        pred, gold = np.asarray(predictions, dtype=int), np.asarray(references, dtype=int)
        labels = list(labels) if labels is not None else [str(i) for i in range(gold.shape[1])]
        precision, recall, f1, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
        out = {"per_label": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                             for name, p, r, f, s in zip(labels, precision, recall, f1, support)}}
        for average in ("micro", "macro"):
            p, r, f, _ = precision_recall_fscore_support(gold, pred, average=average, zero_division=0)
            out.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
        out["subset_accuracy"] = float(accuracy_score(gold, pred))  # exact match of the whole label set
        out["hamming_loss"] = float(hamming_loss(gold, pred))
        gold_empty, pred_empty = ~gold.any(axis=1), ~pred.any(axis=1)
        out["empty_gold"] = int(gold_empty.sum())
        # recall of "no topic": of the paragraphs with no gold topic, the share left empty
        out["empty_kept"] = float(recall_score(gold_empty, pred_empty)) if gold_empty.any() else None
        out["macro_f1_ci"] = None
        if bootstrap:
            rng = np.random.default_rng(seed)
            draws = [f1_score(gold[i], pred[i], average="macro", zero_division=0)
                     for i in rng.integers(0, len(gold), size=(bootstrap, len(gold)))]
            tail = (1 - confidence) / 2 * 100
            out["macro_f1_ci"] = [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]
        return out
