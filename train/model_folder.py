"""What a model folder written by `python -m train` must hold, checked before (and while) it loads:
config.json with the label schema, whole safetensors weights, JSON files that parse, thresholds
that fit the schema. Every problem is a ModelFolderError whose message names the file.

    config = check_model_folder(Path("models/latest"))    # cheap: reads no weights
    thresholds = load_thresholds(Path("models/latest"), LabelSchema(config["task_schema"]))
"""

import json
import struct
from contextlib import contextmanager
from pathlib import Path

from train.labels import MULTI, LabelSchema

THRESHOLDS_FILE = "thresholds.json"


class ModelFolderError(Exception):
    """A model folder that is missing, incomplete or unreadable (the message names the file)."""


def check_model_folder(path: Path) -> dict:
    """The folder's config.json as a dict, or ModelFolderError naming what is wrong. Cheap: the
    weights' header is checked against the file's size, the weights themselves are not read."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path}: model folder not found (train one with `python -m train`)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelFolderError(f"{config_file}: missing; is {path} a model folder written by `python -m train`?")
    config = read_json(config_file)
    if not isinstance(config, dict) or not config.get("task_schema"):
        raise ModelFolderError(f"{config_file}: task_schema: missing; the model was not trained by this toolkit")
    if not (path / "model.safetensors").is_file():
        raise ModelFolderError(f"{path / 'model.safetensors'}: missing (only safetensors weights are loaded)")
    check_safetensors(path / "model.safetensors")
    return config


def read_json(path: Path, fix: str = ""):
    """A JSON file of a model folder, or ModelFolderError `<path>: not valid JSON (...)`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e}){fix}") from None


def check_safetensors(file: Path):
    """ModelFolderError unless `file` is a whole safetensors file: an 8-byte header length, a JSON
    header, then exactly the bytes the header's tensors occupy. A copy cut short or overwritten is
    caught here even when the ONNX engine would never read the weights."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        header_length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if header_length is None or header_length > size - 8:
            raise ModelFolderError(f"{file}: truncated or not a safetensors file ({size} bytes); copy it again "
                                   f"or retrain")
        try:
            header = json.loads(f.read(header_length))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
            raise ModelFolderError(f"{file}: corrupt header (not a safetensors file); copy it again or retrain") from None
    if size != 8 + header_length + end:
        raise ModelFolderError(f"{file}: {size} bytes, but its header describes {8 + header_length + end}; "
                               f"the file is truncated or corrupt (copy it again or retrain)")


def broken_json_file(path: Path) -> str | None:
    """The first JSON file of a model folder that does not parse, as `<file>: not valid JSON (...)`."""
    for file in sorted(Path(path).glob("*.json")) + sorted(Path(path).glob("onnx/*.json")):
        try:
            read_json(file)
        except ModelFolderError as e:
            return str(e)
    return None


def load_thresholds(path: Path, schema: LabelSchema) -> dict:
    """The folder's tuned thresholds {task: {label: threshold}} ({} where none are saved), checked
    against the schema: a threshold the decisions would silently misread is a ModelFolderError."""
    file = Path(path) / THRESHOLDS_FILE
    if not file.is_file():
        return {}
    fix = "; delete it (inference then uses 0.5, and `python -m train.evaluate` tunes it again)"
    thresholds = read_json(file, fix)
    multi = {t.name: t.labels for t in schema.tasks if t.kind == MULTI}
    if not isinstance(thresholds, dict):
        raise ModelFolderError(f"{file}: expected {{task: {{label: threshold}}}}{fix}")
    for task, cuts in thresholds.items():
        if task not in multi or not isinstance(cuts, dict):
            raise ModelFolderError(f"{file}: {task}: not a multi-label task of this model ({list(multi)}){fix}")
        for label, cut in cuts.items():
            ok = isinstance(cut, (int, float)) and not isinstance(cut, bool) and 0 <= cut <= 1
            if label not in multi[task] or not ok:
                raise ModelFolderError(f"{file}: {task}.{label}: {cut!r} is not a threshold between 0 and 1 "
                                       f"for one of {list(multi[task])}{fix}")
    return thresholds


@contextmanager
def quiet_transformers():
    """Without transformers' weight-loading progress bar and its (ANSI-coloured) LOAD REPORT: our
    users get one line from us where something is wrong (missing weights are an error below)."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load_torch_model(path: Path, **kwargs):
    """The folder's PyTorch model; ModelFolderError if any weight is missing from the file (the
    model would silently score with randomly initialised weights)."""
    from transformers import AutoModelForSequenceClassification

    with quiet_transformers():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False, output_loading_info=True, **kwargs)
    missing = sorted(info["missing_keys"]) + sorted(k[0] for k in info["mismatched_keys"])
    if missing:
        raise ModelFolderError(f"{Path(path) / 'model.safetensors'}: {len(missing)} weight(s) missing or of the "
                               f"wrong shape (e.g. {missing[0]}); the model would score with random weights")
    return model
