"""Inference speed benchmark: paragraphs/s and peak memory, on the seed paragraphs + the test split.

    python -m train.bench.predict [MODEL_DIR]      # default models/latest (exported first if needed)
    python -m train.bench.predict MODEL_DIR --batch-sizes 1,8,32,64   # how batch size was chosen

Paths, each timed in its own process (so peak memory is its own):
  pipeline     (a) plain `transformers.pipeline("text-classification", top_k=None)` at its defaults
  default      (b) our default: `Classifier.from_pretrained(MODEL_DIR)`, i.e. ONNX Runtime fp32 over
               length-sorted, dynamically padded batches of 8
  int8         (c) the faster path: `precision="int8"`, ONNX Runtime over the int8 export
  torch-fp32   the same loop with the PyTorch model (`engine="torch"`), for reference
  torch-bf16   the same with the weights cast to bfloat16
  torch-int8   the same after torch's dynamic int8 quantization of the Linear layers
Each path runs once to warm up, then three times; the median pass is reported. Prints the ratios
to the pipeline, peak memory, agreement with the pipeline's labels and test-split macro-F1.
A measurement, not a test.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PATHS = {"pipeline": {}, "default": {}, "int8": {"precision": "int8"},
         "torch-fp32": {"engine": "torch"}, "torch-bf16": {"engine": "torch", "precision": "bf16"},
         "torch-int8": {"engine": "torch", "precision": "int8"}}
REPEATS = 3


def texts_and_gold():
    from train.data import data_config, load_split, split_paths
    from train.labels import LabelSchema

    cfg = data_config("news")
    schema = LabelSchema(cfg.schema)
    paths = split_paths(cfg)
    seeds = load_split(paths["seeds"], schema)
    test = load_split(paths["test"], schema)
    return [r["text"] for r in seeds + test], test, schema


def measure(path: str, model_dir: str, batch_size: int | None = None) -> dict:
    texts, test, schema = texts_and_gold()
    if path == "pipeline":
        from transformers import pipeline

        config = json.loads((Path(model_dir) / "config.json").read_text())
        prefix = config.get("text_prefix", "")
        names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        pipe = pipeline("text-classification", model=model_dir, top_k=None, function_to_apply="none")

        def run():
            out = pipe([prefix + t for t in texts])
            return schema.probabilities(np.array([[{d["label"]: d["score"] for d in row}[n] for n in names]
                                                  for row in out]))
        engine = "torch"
    else:
        from train.inference import Classifier

        clf = Classifier.from_pretrained(model_dir, **PATHS[path])
        engine = f"{clf.engine} {clf.precision}"
        if batch_size:  # the sweep: int8 too runs batched, to see what one window per call costs
            clf.max_batch = None

        def run():
            return clf.scores(texts, **({"batch_size": batch_size} if batch_size else {}))[0]
    run()  # warm-up
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        probs = run()
        seconds.append(time.perf_counter() - start)
    return {"path": path, "engine": engine, "paragraphs": len(texts), "seconds": sorted(seconds)[REPEATS // 2],
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "probs": probs.tolist(), "test_from": len(texts) - len(test)}


def labels(schema, probs):
    """Labels at 0.5 / argmax per task, one tuple per paragraph."""
    from train.labels import MULTI

    return [tuple(tuple(row[t.slice] >= 0.5) if t.kind == MULTI else int(row[t.slice].argmax())
                  for t in schema.tasks) for row in probs]


def macro_f1(schema, probs, records):
    """Test macro-F1 of topics and stance at 0.5, as the training job scores validation."""
    from train.metrics import scores_at_half

    scores = scores_at_half(schema, np.array([schema.encode(r) for r in records]), probs)
    return scores["topics_macro_f1"], scores["stance_macro_f1"]


def one(path: str, model_dir: str, batch_size: int | None = None) -> dict:
    """measure() in a fresh process, so that its peak memory is its own."""
    run = subprocess.run([sys.executable, "-m", "train.bench.predict", "--one", path, model_dir, str(batch_size or 0)],
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{path} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.splitlines()[-1])


def ensure_export(model_dir: str):
    from train.export import export
    from train.onnx_runtime import FP32_FILE, INT8_FILE, ONNX_DIR

    if not all((Path(model_dir) / ONNX_DIR / f).is_file() for f in (FP32_FILE, INT8_FILE)):
        print(f"{model_dir}: exporting to ONNX first (python -m train.export)", file=sys.stderr)
        export(Path(model_dir))


def sweep(model_dir: str, sizes: list[int]) -> None:
    ensure_export(model_dir)
    paths = ["default", "int8", "torch-fp32"]
    print(f"\nparagraphs/s by batch size (windows per forward pass), median of {REPEATS} passes\n")
    print("| batch size | " + " | ".join(paths) + " |")
    print("|---" * (len(paths) + 1) + "|")
    for size in sizes:
        rates = [(r := one(path, model_dir, size))["paragraphs"] / r["seconds"] for path in paths]
        print(f"| {size} | " + " | ".join(f"{x:.1f}" for x in rates) + " |", flush=True)


def main(model_dir: str) -> None:
    ensure_export(model_dir)
    results = {path: one(path, model_dir) for path in PATHS}
    _, test, schema = texts_and_gold()
    base = results["pipeline"]
    base_rate = base["paragraphs"] / base["seconds"]
    reference = labels(schema, np.array(base["probs"]))
    print(f"\n{base['paragraphs']} paragraphs (seeds + test split), model {model_dir}, "
          f"median of {REPEATS} passes\n")
    print("| path | engine | paragraphs/s | × pipeline | peak memory | same labels as pipeline "
          "| test topic macro-F1 | test stance macro-F1 |")
    print("|---|---|---|---|---|---|---|---|")
    f1 = {}
    for path, r in results.items():
        probs = np.array(r["probs"])
        same = np.mean([a == b for a, b in zip(labels(schema, probs), reference)])
        f1[path] = macro_f1(schema, probs[r["test_from"]:], test)
        rate = r["paragraphs"] / r["seconds"]
        print(f"| {path} | {r['engine']} | {rate:.1f} | {rate / base_rate:.2f} | {r['peak_gib']:.2f} GiB "
              f"| {same:.1%} | {f1[path][0]:.3f} | {f1[path][1]:.3f} |")
    change = np.subtract(f1["int8"], f1["default"])
    print(f"\nint8 vs fp32 on the test split: topic macro-F1 {change[0]:+.3f}, stance macro-F1 {change[1]:+.3f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--one"]:
        print(json.dumps(measure(args[1], args[2], int(args[3]) or None)))
    elif "--batch-sizes" in args:
        at = args.index("--batch-sizes")
        sweep(args[0] if at else "models/latest", [int(x) for x in args[at + 1].split(",")])
    else:
        main(args[0] if args else "models/latest")
