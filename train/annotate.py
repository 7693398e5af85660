"""`python -m train.annotate` (or `peninsula-annotate`): choose paragraphs worth labelling, and bring
the labelled ones back in the corpus format.

    python -m train.annotate select input=news.jsonl n=200 output=to_label.json   # Label Studio tasks + config XML
    python -m train.annotate select input=articles/ n=50 output=to_label.csv      # or a CSV to fill in
    python -m train.annotate import input=export.json output=data/mine.jsonl lang=en
    python -m train.data validate data/mine.jsonl && python -m train data.extra_files=[data/mine.jsonl]

`select` scores every paragraph of the input (JSONL with a `text` field, CSV, or a folder of .txt
articles split at blank lines) with a model folder, drops repeats, short texts and texts the corpus
already holds, and chooses `n` by uncertainty and diversity (train/selection.py). `import` turns a
Label Studio export (JSON or CSV) into validated corpus records (train/label_studio.py); with any
problem it writes nothing. Files are written under a temporary name and renamed when complete.
"""

import csv
import io
import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from train import label_studio as LS
from train.data import normalise, project_path, read_records, split_paths
from train.labels import MULTI, LabelSchema

log = logging.getLogger("train.annotate")
COMMANDS = ("select", "import")


class AnnotateError(Exception):
    """Bad input or options: the message names the file or option and what would fix it."""


# -- select ------------------------------------------------------------------------------------
def select(cfg) -> dict:
    """Write `n` chosen paragraphs as Label Studio tasks (+ labelling config) or CSV; return counts."""
    from train.baselines import MeanPooledEncoder
    from train.data import extra_paths
    from train.inference import Classifier, ModelFolderError  # here: `import` needs no torch
    from train.selection import choose, near_duplicates_of, task_uncertainty

    out, fmt = Path(cfg.output), output_format(cfg)
    if cfg.n < 1:
        raise AnnotateError(f"n={cfg.n}: choose at least one paragraph")
    model_dir = project_path(cfg.model_dir)
    try:
        with quiet_transformers():
            clf = Classifier.from_pretrained(model_dir, threads=cfg.threads)
    except ModelFolderError as e:
        raise AnnotateError(str(e)) from None
    schema = clf.schema
    pool, counts = read_pool(cfg, schema)
    if cfg.exclude_corpus:
        corpus = corpus_texts({**split_paths(cfg.data), **extra_paths(cfg.data)})
        known = near_duplicates_of([text for text, _ in pool], corpus)
        counts["in the corpus"] = int(known.sum())
        pool = [p for p, k in zip(pool, known) if not k]
    if not pool:
        raise AnnotateError(f"{cfg.input}: no paragraph left to choose from ({describe(counts)})")
    texts = [text for text, _ in pool]
    log.info("scoring %d paragraphs with %s", len(texts), model_dir)
    probs, _ = clf.scores(texts, cfg.batch_size, cfg.progress)
    uncertainty = task_uncertainty(schema, probs, clf.thresholds)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    with quiet_transformers():  # it reports the classifier weights the bare encoder leaves out
        encoder = MeanPooledEncoder(str(model_dir), config.get("text_prefix", ""), config.get("max_seq_length", 128),
                                    batch_size=cfg.batch_size)  # the fine-tuned encoder, for the clusters
    chosen = choose(texts, uncertainty, encoder, cfg.n, cfg.candidates_per_pick, cfg.seed)
    labels = clf.decode(probs[chosen])
    rows = []
    for i, predicted in zip(chosen, labels):
        data = dict(pool[i][1])
        data["uncertainty"] = round(float(max(uncertainty[t.name][i] for t in schema.tasks)), 4)
        for t in schema.tasks:
            data[f"uncertainty_{t.name}"] = round(float(uncertainty[t.name][i]), 4)
            data[f"model_{t.name}"] = ";".join(predicted[t.name]) if t.kind == MULTI else predicted[t.name]
        rows.append((data, predicted))
    written = write_selection(out, fmt, rows, schema, model_dir.resolve().name)
    counts["chosen"] = len(chosen)
    print(f"{len(chosen)} of {len(texts)} paragraphs chosen ({describe(counts)}) -> "
          + " and ".join(map(str, written)), file=sys.stderr)
    if len(chosen) < cfg.n:
        print(f"warning: n={cfg.n} asked for, only {len(chosen)} distinct paragraphs to offer", file=sys.stderr)
    return counts


def write_selection(out: Path, fmt: str, rows, schema: LabelSchema, model_version: str) -> list[Path]:
    """Label Studio tasks (one per line of a JSON list) and the labelling config beside them, or a
    CSV; returns the files written."""
    if fmt == "csv":
        write_atomically(out, tasks_csv(rows, schema))
        return [out]
    tasks = [LS.task(data, predicted, model_version, 1 - data["uncertainty"], schema) for data, predicted in rows]
    write_atomically(out, "[\n" + ",\n".join(json.dumps(t, ensure_ascii=False) for t in tasks) + "\n]\n")
    xml = out.with_name(f"{out.stem}.label_config.xml")
    write_atomically(xml, LS.labelling_config(schema))
    return [out, xml]


@contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def output_format(cfg) -> str:
    fmt = cfg.format if cfg.format != "auto" else ("csv" if str(cfg.output).lower().endswith(".csv") else "labelstudio")
    if fmt not in ("labelstudio", "csv"):
        raise AnnotateError(f"format={cfg.format}: expected labelstudio, csv or auto")
    return fmt


def read_pool(cfg, schema: LabelSchema) -> tuple[list[tuple[str, dict]], dict]:
    """[(text, task data)] of the input's usable paragraphs, and counts of what was dropped."""
    from train.inputs import InputError, read_inputs
    from train.options import OptionError
    from train.predict import input_format

    reserved = {LS.TEXT_FIELD, LS.ID_FIELD, *LS.CSV_EXPORT_COLUMNS, *(t.name for t in schema.tasks),
                *LS.selection_fields(schema)}
    pool, seen = [], set()
    counts = {"read": 0, "unreadable": 0, "repeated": 0, f"under {cfg.min_chars} characters": 0}
    try:
        source = Path(str(cfg.input))
        fmt = input_format(source, cfg.input_format)  # auto: by extension; a folder: .txt articles
        for where, text, fields in read_inputs(source, fmt, cfg.column, split_paragraphs=True):
            counts["read"] += 1
            if isinstance(text, InputError):
                if cfg.on_error != "skip":
                    raise AnnotateError(f"{text} (on_error=skip passes over bad records)")
                print(f"skipped {text}", file=sys.stderr)
                counts["unreadable"] += 1
                continue
            text = text.strip()
            if len(text) < cfg.min_chars:
                counts[f"under {cfg.min_chars} characters"] += 1
                continue
            if normalise(text) in seen:
                counts["repeated"] += 1
                continue
            seen.add(normalise(text))
            fields = dict(fields)
            fields.pop(cfg.column if fmt == "csv" else "text", None)  # the text itself, kept as the task's text
            data = {LS.TEXT_FIELD: text, LS.ID_FIELD: str(fields.pop("id", None) or paragraph_id(where))}
            if cfg.lang and not fields.get("lang"):
                data["lang"] = cfg.lang
            data.update({(f"input_{k}" if k in reserved else k): v for k, v in fields.items()})
            pool.append((text, data))
    except (InputError, OptionError) as e:
        raise AnnotateError(str(e)) from None
    return pool, counts


def paragraph_id(where: str) -> str:
    """`news.jsonl:17` -> `news-17`; `seeds/a.txt#3` (paragraph 3 of an article) -> `a-p3`."""
    match = re.match(r"^(.*?)([:#])(\d+)$", where)
    name, mark, number = match.groups() if match else (where, "", "")
    stem = re.sub(r"[^\w.-]", "", Path(name).stem) or "stdin"
    return f"{stem}-{'p' if mark == '#' else ''}{number}" if number else stem


def corpus_texts(paths: dict[str, Path]) -> list[str]:
    """Every text of the data config's files that exist (labels unchecked: only the texts matter)."""
    schema = LabelSchema([{"name": "_", "kind": MULTI, "labels": ["_"]}])  # labels are not read
    texts = []
    for path in paths.values():
        if path.is_file():
            texts += [r["text"] for r in read_records(path, schema, labelled=False)[0]]
    return texts


def describe(counts: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v and k not in ("read", "chosen")) or "none dropped"


def tasks_csv(rows, schema: LabelSchema) -> str:
    """One row per paragraph: its data, the model's labels, and an empty column per task to fill in."""
    fields = list(dict.fromkeys(k for data, _ in rows for k in data)) + [t.name for t in schema.tasks]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for data, _ in rows:
        writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                         for k, v in data.items()})
    return buffer.getvalue()


# -- import ------------------------------------------------------------------------------------
def import_export(cfg) -> dict:
    """Write the export's labelled tasks as corpus records (all or nothing); return counts."""
    if cfg.on_unlabelled not in ("fail", "skip"):
        raise AnnotateError(f"on_unlabelled={cfg.on_unlabelled}: expected fail or skip")
    if cfg.on_conflict not in ("fail", "latest"):
        raise AnnotateError(f"on_conflict={cfg.on_conflict}: expected fail or latest")
    schema = LabelSchema(cfg.data.schema)
    records, problems, skipped = LS.read_export(Path(cfg.input), schema, cfg.lang, cfg.source, cfg.on_unlabelled,
                                                cfg.on_conflict)
    if problems:
        raise ImportProblems(problems)
    if not records:
        raise AnnotateError(f"{cfg.input}: no labelled task to import ({skipped} unlabelled skipped)")
    out = Path(cfg.output)
    write_atomically(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"{len(records)} labelled paragraphs -> {out}" + (f" ({skipped} unlabelled tasks skipped)" if skipped else "")
          + f"\nnext: python -m train.data validate {out}; python -m train data.extra_files=[{out}]", file=sys.stderr)
    return {"written": len(records), "skipped": skipped}


class ImportProblems(Exception):
    def __init__(self, problems):
        self.problems = problems
        super().__init__("\n".join(problems))


# -- shared ------------------------------------------------------------------------------------
def write_atomically(path: Path, text: str):
    """`text` into `path` through a temporary file in the same folder: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@hydra.main(version_base="1.3", config_path="../configs", config_name="annotate")
def run(cfg) -> None:
    if OmegaConf.is_missing(cfg, "command") or cfg.command not in COMMANDS:
        print(f"error: say what to do: python -m train.annotate {{{'|'.join(COMMANDS)}}} input=... output=...",
              file=sys.stderr)
        sys.exit(2)
    for option in ("input", "output"):
        if OmegaConf.is_missing(cfg, option):
            print(f"error: {option}=... is required (python -m train.annotate --help)", file=sys.stderr)
            sys.exit(2)
    try:
        select(cfg) if cfg.command == "select" else import_export(cfg)
    except AnnotateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ImportProblems as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"import stopped: {len(e.problems)} problem(s); nothing written", file=sys.stderr)
        sys.exit(2)


def main():
    """`select` / `import` as the first argument, Hydra overrides after it."""
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        sys.argv[1] = f"command={sys.argv[1]}"
    run()


if __name__ == "__main__":
    main()
