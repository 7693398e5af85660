"""The training-recipe ablation (`make bench-recipe`): one model per `configs/experiment/recipe/*.yaml`,
each scored on validation, cross_source and test beside TF-IDF and the frozen-embedding probe.

    python -m train.bench.recipe                              # every variant, then the table
    python -m train.bench.recipe --variants plain,weighted    # some of them
    python -m train.bench.recipe --table-only                 # the table from the models already trained

A variant is trained once into models/recipe/<name> (a folder that exists is reused, so a stopped
ablation resumes), with `python -m train experiment=recipe/<name>`, the command its row shows.
Selection reads validation and cross_source; the seed articles are never used here. Writes
reports/recipe/<split>/ (the evaluation reports) and reports/recipe/table.md.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from train.data import PROJECT_ROOT

VARIANTS = PROJECT_ROOT / "configs/experiment/recipe"
SPLITS = ("validation", "cross_source", "test")
BASELINES = ("tfidf_logreg", "embedding_probe")


def run(command: list[str]):
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=PROJECT_ROOT, check=True)


def train_variant(name: str, models_dir: Path) -> Path:
    out = models_dir / name
    if (out / "validation_metrics.json").is_file():
        print(f"{out}: trained already, reused")
        return out
    # ONNX export is skipped: the evaluation's PyTorch engine gives the same scores
    run([sys.executable, "-m", "train", f"experiment=recipe/{name}", f"run_name={name}",
         f"paths.models_dir={models_dir}", "export_onnx=false"])
    return out


def evaluate_split(split: str, folders: list[Path], out_root: Path) -> dict:
    out = out_root / split
    if out.exists():  # reports are never overwritten: an earlier one is moved aside
        out.rename(out.with_name(f"{split}-{time.strftime('%Y%m%d-%H%M%S')}"))
    run([sys.executable, "-m", "train.evaluate", f"models=[{','.join(str(f) for f in folders)}]", f"split={split}",
         f"out_dir={out}", "progress=false", "bootstrap.resamples=200"])
    return json.loads((out / "metrics.json").read_text())


def macro(system: dict, task: str) -> float:
    scores = system[task]
    return (scores["tuned"] if "tuned" in scores else scores)["macro_f1"]


def table(names: list[str], models_dir: Path, results: dict) -> str:
    header = ["variant", "command", "train min (2 CPU cores)"] + [
        f"{split} {task}" for split in SPLITS for task in ("topics", "stance")] + ["test topic ECE"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        speed = json.loads((models_dir / name / "validation_metrics.json").read_text())
        row = [f"**{name}**", f"`python -m train experiment=recipe/{name}`", f"{speed['train_runtime'] / 60:.1f}"]
        row += [f"{macro(results[s]['systems'][name], t):.3f}" for s in SPLITS for t in ("topics", "stance")]
        row.append(f"{results['test']['systems'][name]['calibration']['topics']['ece']:.3f}")
        lines.append("| " + " | ".join(row) + " |")
    for baseline in BASELINES:
        if all(baseline in results[s]["systems"] for s in SPLITS):
            row = [baseline, "(same training split)", ""]
            row += [f"{macro(results[s]['systems'][baseline], t):.3f}" for s in SPLITS for t in ("topics", "stance")]
            row.append(f"{results['test']['systems'][baseline]['calibration']['topics']['ece']:.3f}")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.bench.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", help="comma-separated names in configs/experiment/recipe/ (default: all)")
    parser.add_argument("--models-dir", default="models/recipe", help="where the variants' models go")
    parser.add_argument("--out", default="reports/recipe", help="where the reports and table.md go")
    parser.add_argument("--table-only", action="store_true", help="train nothing; score the models already there")
    args = parser.parse_args(argv)
    known = sorted(p.stem for p in VARIANTS.glob("*.yaml"))
    names = args.variants.split(",") if args.variants else known
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {known}")
    models_dir, out_root = PROJECT_ROOT / args.models_dir, PROJECT_ROOT / args.out
    if args.table_only:
        names = [n for n in names if (models_dir / n / "validation_metrics.json").is_file()]
    folders = [models_dir / n if args.table_only else train_variant(n, models_dir) for n in names]
    results = {split: evaluate_split(split, folders, out_root) for split in SPLITS}
    text = table(names, models_dir, results)
    (out_root / "table.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
