"""Expected calibration error and reliability-curve bins (an `evaluate` metric module).

    calibration_error = evaluate.load("train/metrics/calibration_error")
    calibration_error.compute(predictions=[0.9, 0.2, 0.7], references=[1, 0, 0], n_bins=10)
    # {"ece": 0.333, "prob_true": [...], "prob_pred": [...], "counts": [...]}
"""

import datasets
import evaluate
import numpy as np
from sklearn.calibration import calibration_curve

_DESCRIPTION = """Binary calibration: scikit-learn's calibration_curve gives, per non-empty bin of
equal width, the observed frequency of positives (prob_true) and the mean score (prob_pred); the
expected calibration error is their absolute gap averaged over bins, weighted by the bin's share of
examples. scikit-learn has no ECE function; this is the standard formula (Naeini et al., 2015)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: scores in [0, 1] (a topic's probability, or a class's confidence).
    references: 0/1 outcomes (the topic is gold; the predicted class is right).
    n_bins: number of equal-width bins on [0, 1].
Returns:
    ece, and the non-empty bins' prob_true, prob_pred and counts (lists of the same length).
"""


class CalibrationError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/calibration.html"])

    def _compute(self, predictions, references, n_bins=10):
        scores, outcomes = np.asarray(predictions, dtype=float), np.asarray(references, dtype=int)
        prob_true, prob_pred = calibration_curve(outcomes, scores, n_bins=n_bins, strategy="uniform", pos_label=1)
        # the bin counts, binned exactly as calibration_curve bins (uniform edges, searchsorted)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        counts = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=n_bins)
        counts = counts[counts > 0]
        ece = float(np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred)))
        return {"ece": ece, "prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist(),
                "counts": counts.tolist()}
