"""Calibrated scores: fitted on validation logits, then baked into the classification head.

Multi-label tasks get per-label Platt scaling (z -> a*z + b: a sharpens or softens a label's scores,
b moves them back to the label's real rate, undoing what `pos_weight` or logit adjustment did in
training); single-label tasks get one temperature (z -> z / T). Both are affine in the logits, so
they fold exactly into the head's last Linear layer: every engine (PyTorch, ONNX Runtime, a plain
`pipeline`) then gives calibrated scores with no code of ours. `calibration.json` in the model
folder records what was folded in, so the raw head can be recovered (`invert`) for reports.

    cal = fit(schema, val_logits, val_targets)   # {"topics": {"scale": [...], "bias": [...]}, "stance": {"temperature": T}}
    bake(model, schema, cal)                     # the model now outputs apply(schema, cal, logits)
"""

import json
from pathlib import Path

import numpy as np

from train.labels import MULTI, LabelSchema

CALIBRATION_FILE = "calibration.json"


def fit(schema: LabelSchema, logits: np.ndarray, targets: np.ndarray) -> dict:
    """Per task: Platt scale and bias per label (multi-label) or a temperature (single-label), each
    minimising the negative log-likelihood of `targets` on these logits."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    out = {}
    for t in schema.tasks:
        z, y = logits[:, t.slice], targets[:, t.slice]
        if t.kind == MULTI:
            fitted = [_platt(z[:, k], y[:, k]) for k in range(len(t.labels))]
            out[t.name] = {"method": "platt", "scale": [a for a, _ in fitted], "bias": [b for _, b in fitted]}
        else:
            out[t.name] = {"method": "temperature", "temperature": _temperature(z, y.argmax(axis=1))}
    return out


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of a 1-D logistic regression of y on z; the identity when a class is absent."""
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return 1.0, 0.0
    model = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def _temperature(z: np.ndarray, gold: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t):
        return -log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(gold)), gold].mean()
    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def _affine(schema: LabelSchema, calibration: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per output: (scale, bias) such that calibrated = scale * raw + bias."""
    scale, bias = np.ones(schema.num_outputs), np.zeros(schema.num_outputs)
    for t in schema.tasks:
        c = calibration.get(t.name)
        if c is None:
            continue
        if c["method"] == "platt":
            scale[t.slice], bias[t.slice] = c["scale"], c["bias"]
        else:
            scale[t.slice] = 1.0 / c["temperature"]
    return scale, bias


def apply(schema: LabelSchema, calibration: dict, logits: np.ndarray) -> np.ndarray:
    scale, bias = _affine(schema, calibration)
    return np.asarray(logits) * scale + bias


def invert(schema: LabelSchema, calibration: dict, logits: np.ndarray) -> np.ndarray:
    """The raw head's logits from calibrated ones."""
    scale, bias = _affine(schema, calibration)
    return (np.asarray(logits) - bias) / scale


def logits_from_probabilities(schema: LabelSchema, probs: np.ndarray) -> np.ndarray:
    """Logits that give these probabilities (log-odds; log-probabilities for single-label tasks,
    which softmax reads the same). Clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    z = np.log(p)
    for t in schema.tasks:
        if t.kind == MULTI:
            z[:, t.slice] = np.log(p[:, t.slice]) - np.log1p(-p[:, t.slice])
    return z


def head_layer(model, num_outputs: int):
    """The classification head's last Linear layer (BERT: classifier; XLM-R: classifier.out_proj)."""
    import torch

    found = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_outputs]
    if not found:
        raise ValueError(f"no Linear layer with {num_outputs} outputs to fold the calibration into")
    return found[-1]


def bake(model, schema: LabelSchema, calibration: dict) -> None:
    """Fold the calibration into the head: W' = scale * W, c' = scale * c + bias, row by row."""
    import torch

    layer = head_layer(model, schema.num_outputs)
    scale, bias = _affine(schema, calibration)
    with torch.no_grad():
        s = torch.tensor(scale, dtype=layer.weight.dtype, device=layer.weight.device)
        layer.weight.mul_(s[:, None])
        layer.bias.mul_(s).add_(torch.tensor(bias, dtype=layer.bias.dtype, device=layer.bias.device))


def save(model_dir: Path, calibration: dict) -> None:
    (Path(model_dir) / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")


def load(model_dir: Path) -> dict | None:
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
