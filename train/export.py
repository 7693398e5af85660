"""`python -m train.export` (or `peninsula-export`): ONNX Runtime copies of a saved model, the fast
CPU path of `Classifier` and `python -m train.predict`.

    python -m train.export                                  # models/latest -> models/latest/onnx/
    python -m train.export model_dir=models/20261123-191306_e5-small quantize=false

Writes into `<model>/onnx/` (complete or not at all):
  model.onnx             fp32, with ONNX Runtime's transformer fusions (attention, GELU, layer norms)
  model_quantized.onnx   int8 weights per output channel, activations quantized per call (VNNI);
                         the word embeddings and feed-forward output projections stay fp32
  export.json            versions, and how far each file's outputs are from the PyTorch model's
and prints the int8 file's macro-F1 change from fp32 on the test split (`compare_on`).
The fp32 file must give the PyTorch model's logits (max difference 1e-3 on check texts of several
lengths and languages, padded in one batch) or nothing is written. The training job exports every
model it saves (`export_onnx: true`). `make bench-predict` measures both files' speed and accuracy.
"""

import json
import logging
import os
import re
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from train.files import remove_stale_temps, temp_path
from train.onnx_runtime import FP32_FILE, INT8_FILE, ONNX_DIR, onnx_session
from train.options import OptionError, boolean

FP32_TOLERANCE = 1e-3  # max |logit difference| from PyTorch; float reordering gives ~1e-5
# ONNX Runtime's fusions recognise these encoders' attention; other architectures are exported plain.
FUSABLE = {"bert", "roberta", "xlm-roberta"}
CHECK_TEXTS = [
    "Kim Jong Un and Vladimir Putin signed a treaty in Pyongyang.",
    "El Consejo de Seguridad de la ONU debatió nuevas sanciones contra Corea del Norte por sus "
    "lanzamientos de misiles balísticos, mientras Seúl pedía reanudar el diálogo.",
    "남북 정상회담",
    "Seoul and Washington resumed joint drills; Pyongyang called them a rehearsal for invasion. " * 6,
]


# int8 quantizes the matrix products of attention and of the feed-forward input; it keeps in fp32
# the word embeddings (not in these op types) and every feed-forward output projection, whose
# input (after GELU) has outliers that one per-call activation scale resolves badly. On e5-small
# (566 paragraphs) that kept 97.2% of fp32's labels, against 92.2% with everything quantized.
INT8_OP_TYPES = ["MatMul", "Attention"]
FFN_OUTPUT = re.compile(r"/layer\.\d+/output/dense/MatMul$")  # transformers' `layer.N.output.dense`


class ExportError(Exception):
    pass


def check_batch(tokenizer, config: dict):
    """The check texts, tokenised and padded into one batch (int64 arrays, as the runtime takes them)."""
    longest = min(256, tokenizer.model_max_length, config.get("max_position_embeddings", 512))
    enc = tokenizer([config.get("text_prefix", "") + t for t in CHECK_TEXTS], padding=True, truncation=True,
                    max_length=longest, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def export(model_dir: Path, quantize: bool = True) -> dict:
    """Export `model_dir` (a folder written by `python -m train`) to `model_dir/onnx/`; return the
    check results written to export.json. Peak memory stays near 3 GB for e5-small (it was 6 GB):
    the PyTorch model is freed once exported, and the fusions run with the weights left on disk."""
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from train.model_folder import check_model_folder

    model_dir = Path(model_dir)
    config = check_model_folder(model_dir)
    remove_stale_temps(model_dir / ONNX_DIR)  # a killed export's half-written folder
    tmp = temp_path(model_dir / ONNX_DIR)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ids, mask, expected = torch_to_onnx(model_dir, config, tmp / "raw.onnx")
        release_memory()  # the PyTorch model is gone: give its memory back before the ONNX steps
        if config.get("model_type") in FUSABLE:
            fusions = fuse(tmp / "raw.onnx", tmp / FP32_FILE, config)
        else:
            (tmp / "raw.onnx").rename(tmp / FP32_FILE)
            fusions = {}
        report = {"onnxruntime": onnxruntime.__version__,
                  "torch": torch.__version__, "opset": 17, "fusions": fusions,
                  "check_texts": len(CHECK_TEXTS), "tolerance": FP32_TOLERANCE}
        report[FP32_FILE] = {"max_abs_logit_diff": max_diff(tmp / FP32_FILE, ids, mask, expected)}
        if report[FP32_FILE]["max_abs_logit_diff"] > FP32_TOLERANCE:
            raise ExportError(f"{model_dir / ONNX_DIR / FP32_FILE}: logits differ from the PyTorch model by "
                              f"{report[FP32_FILE]['max_abs_logit_diff']:.2g} (> {FP32_TOLERANCE}); not written")
        if quantize:
            fp32_nodes = kept_in_fp32(tmp / FP32_FILE)
            with root_log_level(logging.WARNING):  # the quantizer logs a line per tensor to the root logger
                quantize_dynamic(str(tmp / FP32_FILE), str(tmp / INT8_FILE), weight_type=QuantType.QInt8,
                                 per_channel=True, op_types_to_quantize=INT8_OP_TYPES, nodes_to_exclude=fp32_nodes,
                                 extra_options={"DefaultTensorType": 1})  # 1 = FLOAT
            # int8 is approximate by design: its distance is recorded; `main` prints its F1 change.
            report[INT8_FILE] = {"max_abs_logit_diff": max_diff(tmp / INT8_FILE, ids, mask, expected),
                                 "kept_in_fp32": fp32_nodes}
        (tmp / "export.json").write_text(json.dumps(report, indent=2) + "\n")
        replace_dir(tmp, model_dir / ONNX_DIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def torch_to_onnx(model_dir: Path, config: dict, raw: Path):
    """Write the PyTorch model as a plain ONNX graph to `raw`; return the check batch and the
    PyTorch logits on it. The model is loaded here and freed when this returns."""
    import torch
    from transformers import AutoTokenizer

    from train.model_folder import load_torch_model

    # Eager attention: ONNX Runtime fuses its pattern into one Attention op (sdpa's is not matched).
    model = load_torch_model(model_dir, attn_implementation="eager").eval()
    ids, mask = check_batch(AutoTokenizer.from_pretrained(model_dir), config)
    with torch.inference_mode():
        expected = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but its graph is the one ONNX Runtime's BERT
        # fusions match (12 fused Attention ops; int8 measured 230 vs 180 paragraphs/s with the
        # torch.export graph). torch is pinned, so it is there.
        warnings.simplefilter("ignore")
        axes = {0: "batch", 1: "sequence"}
        torch.onnx.export(model, (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2])), str(raw),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return ids, mask, expected


def fuse(raw: Path, out: Path, config: dict) -> dict:
    """ONNX Runtime's transformer fusions (attention, GELU, layer norms) of `raw`, written to `out`
    as one file; returns the fused operator counts. The fusions' shape inference copies the model
    several times, so the weights move to a side file first and the copies hold the graph only
    (the step's peak went from about 3 GB above the rest of the process to 0.2 GB)."""
    import onnx
    from onnxruntime.transformers import optimizer

    onnx.save(onnx.load(raw), raw, save_as_external_data=True, location=f"{raw.name}.data", size_threshold=1024)
    graph = onnx.load(raw, load_external_data=False)
    fused_file = out.with_name(f"fused-{out.name}")
    cwd = os.getcwd()
    os.chdir(raw.parent)  # the fusions read the weights they merge (query, key, value) relative to it
    try:
        # opt_level=0: our fusions only; ONNX Runtime applies its own graph optimisations when it loads the file
        fused = optimizer.optimize_model(graph, model_type="bert", num_heads=config["num_attention_heads"],
                                         hidden_size=config["hidden_size"], opt_level=0)
        fusions = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(fused_file), use_external_data_format=True)
    finally:
        os.chdir(cwd)
    del fused, graph
    onnx.save(onnx.load(fused_file), out)  # one self-contained file again, as inference and users expect
    for leftover in (raw, raw.with_name(f"{raw.name}.data"), fused_file, fused_file.with_name(f"{fused_file.name}.data")):
        leftover.unlink(missing_ok=True)
    return fusions


def kept_in_fp32(fp32_file: Path) -> list[str]:
    """The feed-forward output projections of the exported graph (one per layer), left unquantized."""
    import onnx

    graph = onnx.load(fp32_file, load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "MatMul" and FFN_OUTPUT.search(node.name)]


@contextmanager
def root_log_level(level: int):
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(level, before))
    try:
        yield
    finally:
        root.setLevel(before)


def release_memory():
    """Collect garbage and hand freed heap pages back to the system (glibc's malloc keeps them
    otherwise, and the next step's peak would sit on top of them)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def max_diff(file: Path, ids, mask, expected) -> float:
    """Largest logit difference from PyTorch, each text run alone and all padded in one batch."""
    session = onnx_session(file)
    batched = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    alone = np.concatenate([session.run(["logits"], {"input_ids": i[m == 1][None], "attention_mask": m[m == 1][None]})[0]
                            for i, m in zip(ids, mask)])
    return float(max(np.abs(batched - expected).max(), np.abs(alone - expected).max()))


def replace_dir(new: Path, target: Path):
    """Put `new` at `target`, replacing any older export without a moment where a half one is visible."""
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def accuracy_change(model_dir: Path, labelled_file: Path) -> dict:
    """Macro-F1 per task (at 0.5, as training selects) of the fp32 and the int8 file on a labelled
    split: {task: (fp32, int8)}."""
    from train.data import load_split
    from train.metrics import scores_at_half
    from train.inference import Classifier

    fp32 = Classifier.from_pretrained(model_dir, engine="onnx")
    records = load_split(labelled_file, fp32.schema)
    texts, gold = [r["text"] for r in records], np.array([fp32.schema.encode(r) for r in records])
    exact = scores_at_half(fp32.schema, gold, fp32.scores(texts)[0])
    int8 = Classifier.from_pretrained(model_dir, engine="onnx", precision="int8")
    approx = scores_at_half(fp32.schema, gold, int8.scores(texts)[0])
    return {t.name: (exact[f"{t.name}_macro_f1"], approx[f"{t.name}_macro_f1"]) for t in fp32.schema.tasks}


@hydra.main(config_path="../configs", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from train.model_folder import ModelFolderError

    try:
        run(cfg)
    except (ModelFolderError, ExportError, OptionError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the temporary onnx folder is already removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def run(cfg):
    """Export, print the files' sizes and distances from PyTorch, then int8's macro-F1 change."""
    from train.data import project_path

    boolean("quantize", cfg.quantize)  # options first: nothing is loaded before they are known to work
    if cfg.compare_on is not None and not isinstance(cfg.compare_on, str):
        raise OptionError("compare_on", cfg.compare_on, "expected a labelled JSONL file or null")
    model_dir = project_path(cfg.model_dir)
    report = export(model_dir, quantize=cfg.quantize)
    print(f"wrote {model_dir / ONNX_DIR}/")
    for name in (FP32_FILE, INT8_FILE):
        if name in report:
            size = (model_dir / ONNX_DIR / name).stat().st_size / 2**20
            print(f"  {name:22s} {size:6.0f} MiB   max |logit - PyTorch| {report[name]['max_abs_logit_diff']:.2g}")
    if cfg.quantize and cfg.compare_on:
        from train.data import DataError

        labelled = project_path(cfg.compare_on)
        try:
            change = accuracy_change(model_dir, labelled)
        except (DataError, FileNotFoundError) as e:
            print(f"accuracy change not measured: {labelled}: {str(e).splitlines()[0]}")
            return
        print(f"macro-F1 at 0.5 on {labelled}:")
        for task, (exact, approx) in change.items():
            print(f"  {task:14s} fp32 {exact:.3f}   int8 {approx:.3f}   change {approx - exact:+.3f}")


if __name__ == "__main__":
    main()
