"""The ONNX Runtime side of a model folder: where its exported files live and how a session runs them.

    <model>/onnx/model.onnx             fp32 (written by `python -m train.export`)
    <model>/onnx/model_quantized.onnx   int8
    forward = onnx_forward(onnx_file(model_dir, "int8"), threads=2)
    logits = forward(input_ids, attention_mask)      # int64 arrays [batch, sequence] -> [batch, outputs]

Used by inference (to run the files) and export (to write and check them); it imports neither.
"""

import os
from pathlib import Path

ONNX_DIR, FP32_FILE, INT8_FILE = "onnx", "model.onnx", "model_quantized.onnx"
FILE_FOR_PRECISION = {"fp32": FP32_FILE, "int8": INT8_FILE}


def onnx_file(model_dir: Path, precision: str) -> Path:
    """The exported file for `precision` (fp32 or int8) in a model folder (it may not exist)."""
    return Path(model_dir) / ONNX_DIR / FILE_FOR_PRECISION.get(precision, FP32_FILE)


def onnx_session(file: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1  # the graph is a chain: parallelism lives inside the matmuls
    return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])


def onnx_forward(file: Path, threads: int | None = None):
    """(input_ids, attention_mask) int64 arrays -> logits array, with an ONNX Runtime session over `file`."""
    session = onnx_session(file, threads)
    return lambda ids, mask: session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
