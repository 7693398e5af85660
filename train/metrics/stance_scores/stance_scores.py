"""Single-label stance scores (an `evaluate` metric module, loaded by path, built on scikit-learn).

    stance_scores = evaluate.load("train/metrics/stance_scores")
    stance_scores.compute(predictions=[0, 2, 1], references=[0, 1, 1], labels=["pos", "neg", "neu"])
    # {"accuracy": 0.667, "macro_f1": 0.556, "confusion_matrix": [[1, 0, 0], [0, 1, 1], [0, 0, 0]], ...}
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

_DESCRIPTION = """Accuracy, macro-averaged precision/recall/F1, per-class precision, recall, F1 and
support, the confusion matrix (rows gold, columns predicted, in label order), and an optional
percentile-bootstrap confidence interval on macro-F1. Every class counts in the macro average, also
one absent from the references (scikit-learn's zero_division=0)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class indices.
    references: gold class indices.
    labels: class names, in index order (required: it fixes the classes and the matrix order).
    bootstrap: number of resamples for the macro-F1 interval (0: none).
    seed: seed of the resampling.
    confidence: the interval's coverage.
Returns:
    accuracy, macro_precision, macro_recall, macro_f1, per_label {name: {precision, recall, f1,
    support}}, confusion_matrix (list of rows), macro_f1_ci ([low, high] or None).
"""


class StanceScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#classification-metrics"])

    def _compute(self, predictions, references, labels, bootstrap=0, seed=0, confidence=0.95):
        pred, gold = np.asarray(predictions, dtype=int), np.asarray(references, dtype=int)
        classes = list(range(len(labels)))
        precision, recall, f1, support = precision_recall_fscore_support(
            gold, pred, labels=classes, average=None, zero_division=0)
        out = {"accuracy": float(accuracy_score(gold, pred))}
        p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=classes, average="macro", zero_division=0)
        out.update({"macro_precision": float(p), "macro_recall": float(r), "macro_f1": float(f)})
        out["per_label"] = {name: {"precision": float(pi), "recall": float(ri), "f1": float(fi), "support": int(si)}
                            for name, pi, ri, fi, si in zip(labels, precision, recall, f1, support)}
        out["confusion_matrix"] = confusion_matrix(gold, pred, labels=classes).tolist()
        out["macro_f1_ci"] = None
        if bootstrap:
            rng = np.random.default_rng(seed)
            draws = [f1_score(gold[i], pred[i], labels=classes, average="macro", zero_division=0)
                     for i in rng.integers(0, len(gold), size=(bootstrap, len(gold)))]
            tail = (1 - confidence) / 2 * 100
            out["macro_f1_ci"] = [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]
        return out
