"""`python -m train.predict` (or `peninsula-predict`): label paragraphs or articles from files or stdin.

    python -m train.predict input=seeds/001_6f496aa57e6e3364.txt mode=article
    python -m train.predict input=seeds/ mode=article output=out.jsonl     # one article per .txt file
    python -m train.predict input=news.jsonl                               # a `text` field per line
    python -m train.predict input=news.csv column=body output=out.csv
    cat article.txt | python -m train.predict mode=article                 # stdin (input=-)

Every input field passes through unchanged; the model's output goes under its own key: a JSONL
record gets `"prediction": {...}`, a CSV row `pred_*` columns. Options, the input and the output
path are checked before the model is loaded (`error: <what>: <why>`, exit 2). Records stream
through in chunks: the output grows as it goes (under a temporary name, renamed when complete;
Ctrl-C removes it). A bad record stops the run with `file:line: field: message`, or, with
`on_error=skip`, is reported, counted and skipped.
"""

import csv
import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from train.articles import DEFAULT_STANCE_METHOD, STANCE_METHODS
from train.data import project_path
from train.files import remove_stale_temps, temp_path
from train.inference import ENGINES, PRECISIONS, Classifier, ModelFolderError
from train.inputs import CSV_PREFIX, PREDICTION_KEY, InputError, read_inputs, text_files
from train.options import OptionError, boolean, one_of, positive_int

SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}  # anything else is read as text


def check_options(cfg) -> dict:
    """Every option, the input and the output path, checked before any model is loaded. Returns
    {"input": Path or None (stdin), "input_format", "output": Path or None (stdout), "output_format"}."""
    one_of("mode", cfg.mode, ("paragraph", "article"))
    one_of("article_stance", cfg.article_stance, tuple(STANCE_METHODS))
    one_of("on_error", cfg.on_error, ("fail", "skip"))
    one_of("input_format", cfg.input_format, ("auto", "txt", "jsonl", "csv"))
    one_of("output_format", cfg.output_format, ("auto", "jsonl", "csv"))
    one_of("engine", cfg.engine, ENGINES)
    one_of("precision", cfg.precision, PRECISIONS)
    if cfg.engine == "onnx" and cfg.precision not in ("fp32", "int8"):
        raise OptionError("precision", cfg.precision, "the onnx engine has fp32 and int8")
    positive_int("batch_size", cfg.batch_size)
    positive_int("chunk_size", cfg.chunk_size)
    positive_int("threads", cfg.threads, optional=True)
    boolean("progress", cfg.progress)
    if not isinstance(cfg.column, str) or not cfg.column:
        raise OptionError("column", cfg.column, "must name a CSV column")
    source = None if cfg.input in ("-", None) else Path(str(cfg.input))  # relative to where it runs
    fmt = input_format(source, cfg.input_format)
    if source is None and fmt == "csv":
        raise InputError("input=-: csv input needs a file (input=PATH)")
    output = None if cfg.output in ("-", None) else Path(str(cfg.output))
    if output is not None:
        check_output(output, str(cfg.output), source)
    out_fmt = cfg.output_format if cfg.output_format != "auto" else (
        "csv" if output is not None and output.suffix == ".csv" else "jsonl")
    return {"input": source, "input_format": fmt, "output": output, "output_format": out_fmt}


def input_format(source: Path | None, fmt: str) -> str:
    """The input's format (txt, jsonl or csv), or InputError if the input cannot be read as one."""
    if source is None:
        return "txt" if fmt == "auto" else fmt
    if source.is_dir():
        if fmt not in ("auto", "txt"):
            raise OptionError("input_format", fmt, f"{source} is a folder, read as one article per .txt file")
        if not text_files(source):
            raise InputError(f"input={source}: no .txt files in this folder")
        return "txt"
    if not source.is_file():
        raise InputError(f"input={source}: not found")
    return fmt if fmt != "auto" else SUFFIX_FORMATS.get(source.suffix, "txt")


def check_output(output: Path, given: str, source: Path | None):
    """InputError naming the user's path unless `output` can be written: not a folder, its folder
    exists, and it is not the input (which would be overwritten while being read)."""
    if output.is_dir():
        raise InputError(f"output={given}: is a folder; name a file (e.g. output={Path(given) / 'labels.jsonl'})")
    if not output.parent.is_dir():
        raise InputError(f"output={given}: folder {output.parent} does not exist; create it first")
    if source is not None and output.resolve() == source.resolve():
        raise InputError(f"output={given}: is the input file; choose another output (the input would be overwritten)")


def label_records(clf: Classifier, records, mode: str, batch_size: int, on_batch=None,
                  article_stance: str = DEFAULT_STANCE_METHOD):
    """Each (where, text, record) as the record unchanged plus the model's output under `prediction`."""
    if mode == "article":
        return [{**record, PREDICTION_KEY: clf.predict_article(text, batch_size, on_batch, article_stance)}
                for _, text, record in records]
    # a `headline` field (JSONL, CSV) is the context a headline-context model reads with the paragraph
    contexts = [record.get("headline") if isinstance(record, dict) else None for _, _, record in records]
    preds = clf.predict([text for _, text, _ in records], batch_size, on_batch=on_batch, contexts=contexts)
    return [{**record, PREDICTION_KEY: p} for (_, _, record), p in zip(records, preds)]


def to_csv_row(record: dict) -> dict:
    """The input's columns unchanged, then the prediction flattened into `pred_*` columns: labels
    joined with ';', one `pred_<task>:<label>` column per score, the number of paragraphs of an article."""
    flat = {k: v for k, v in record.items() if k != PREDICTION_KEY}
    for k, v in record[PREDICTION_KEY].items():
        if k == "paragraphs":
            flat[f"{CSV_PREFIX}paragraphs"] = len(v)
        elif isinstance(v, list):
            flat[f"{CSV_PREFIX}{k}"] = ";".join(map(str, v))
        elif isinstance(v, dict):
            flat.update({f"{CSV_PREFIX}{k.removesuffix('_scores')}:{label}": s for label, s in v.items()})
        else:
            flat[f"{CSV_PREFIX}{k}"] = v
    return flat


def run(cfg) -> dict:
    """Label every input record; returns counts {"written": n, "skipped": n}."""
    plan = check_options(cfg)  # before the model is loaded
    out_path = plan["output"]
    if out_path is not None:
        remove_stale_temps(out_path)  # left by a killed run to this output
    clf = Classifier.from_pretrained(project_path(cfg.model_dir), threads=cfg.threads,
                                     precision=cfg.precision, engine=cfg.engine)
    tmp = temp_path(out_path) if out_path else None
    sink = tmp.open("w", encoding="utf-8", newline="") if tmp else sys.stdout
    counts, writer, records_done = {"written": 0, "skipped": 0}, None, 0
    progress = _progress(cfg)
    try:
        chunk = []
        for where, text, record in read_inputs(plan["input"], plan["input_format"], cfg.column,
                                               split_paragraphs=cfg.mode == "paragraph"):
            if isinstance(text, InputError):
                if cfg.on_error == "fail":
                    raise text
                progress.write(f"skipped {text}", file=sys.stderr)
                counts["skipped"] += 1
                continue
            chunk.append((where, text, record))
            if len(chunk) >= cfg.chunk_size:
                records = label_records(clf, chunk, cfg.mode, cfg.batch_size, progress.update, cfg.article_stance)
                writer = _write(sink, records, plan["output_format"], writer, counts)
                records_done += len(chunk)
                progress.set_postfix_str(f"{records_done} {cfg.mode}(s)")
                chunk = []
        if chunk:
            records = label_records(clf, chunk, cfg.mode, cfg.batch_size, progress.update, cfg.article_stance)
            writer = _write(sink, records, plan["output_format"], writer, counts)
            records_done += len(chunk)
            progress.set_postfix_str(f"{records_done} {cfg.mode}(s)")
        progress.close()
    except BaseException:
        progress.close()
        if tmp:
            sink.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp:
        sink.close()
        os.replace(tmp, out_path)
    print(f"{counts['written']} {cfg.mode}(s) labelled, {counts['skipped']} skipped"
          + (f" -> {out_path}" if out_path else ""), file=sys.stderr)
    return counts


def _progress(cfg):
    """A bar over windows (forward passes), so that one long paragraph shows it is moving too."""
    from tqdm.auto import tqdm

    return tqdm(unit="window", file=sys.stderr, disable=not cfg.progress, desc="labelling")


def _write(sink, records, fmt, writer, counts):
    for r in records:
        if fmt == "csv":
            row = to_csv_row(r)
            if writer is None:
                writer = csv.DictWriter(sink, fieldnames=list(row), extrasaction="ignore")
                writer.writeheader()
            writer.writerow(row)
        else:
            sink.write(json.dumps(r, ensure_ascii=False) + "\n")
        counts["written"] += 1
    sink.flush()
    return writer


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (InputError, OptionError, ModelFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # the temporary output is already removed
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
