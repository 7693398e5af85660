"""`python -m train.predict` (or `peninsula-predict`): label paragraphs or articles from files or stdin.

    python -m train.predict input=seeds/001_6f496aa57e6e3364.txt mode=article
    python -m train.predict input=seeds/ mode=article output=out.jsonl     # one article per .txt file
    python -m train.predict input=news.jsonl                               # a `text` field per line
    python -m train.predict input=news.csv column=body output=out.csv
    cat article.txt | python -m train.predict mode=article                 # stdin (input=-)

Records stream through in chunks: the output grows as it goes (under a temporary name, renamed
when complete). A bad record stops the run with `file:line: field: message`, or, with
`on_error=skip`, is reported, counted and skipped.
"""

import csv
import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from train.articles import split_paragraphs as split_text
from train.data import project_path, unpaired_surrogate
from train.inference import Classifier, ModelFolderError


class InputError(Exception):
    pass


def read_inputs(source: str, fmt: str, column: str, split_paragraphs: bool = False):
    """Yield (where, text, passthrough fields), or (where, InputError, {}) for a bad record.
    A .txt input is one article; with `split_paragraphs` it yields the article's paragraphs."""
    if source in ("-", None):
        if fmt == "jsonl":
            for number, line in enumerate(sys.stdin.buffer, 1):
                if line.strip():
                    yield from _jsonl_line(f"<stdin>:{number}", line)
        elif fmt == "csv":
            raise InputError("<stdin>: csv input needs a file (input=PATH)")
        else:
            yield from _from_text("<stdin>", sys.stdin.buffer.read(), split_paragraphs)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
        if not files:
            raise InputError(f"{path}: no .txt files in this folder")
        for f in files:
            yield from _from_text(str(f), f.read_bytes(), split_paragraphs)
        return
    if not path.is_file():
        raise InputError(f"{path}: input not found")
    fmt = fmt if fmt != "auto" else {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(path.suffix, "txt")
    if fmt == "txt":
        yield from _from_text(str(path), path.read_bytes(), split_paragraphs)
    elif fmt == "jsonl":
        yield from _from_jsonl(path)
    else:
        yield from _from_csv(path, column)


def _decode(where, raw: bytes):
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: text: invalid UTF-8 at byte {e.start}") from None


def _from_text(where, raw, split):
    try:
        text = _decode(f"{where}:1", raw)
    except InputError as e:
        yield f"{where}:1", e, {}
        return
    if not text.strip():
        yield f"{where}:1", InputError(f"{where}:1: text: empty"), {}
    elif split:
        for i, paragraph in enumerate(split_text(text)):
            yield f"{where}#{i}", paragraph, {"file": where, "paragraph": i}
    else:
        yield f"{where}:1", text, {"file": where}


def _jsonl_line(where, line: bytes):
    try:
        record = json.loads(_decode(where, line.rstrip(b"\r")))
    except InputError as e:
        yield where, e, {}
        return
    except json.JSONDecodeError as e:
        yield where, InputError(f"{where}: line: invalid JSON ({e.msg})"), {}
        return
    except (ValueError, RecursionError) as e:  # an integer over 4300 digits; nesting deeper than the stack
        yield where, InputError(f"{where}: line: unreadable JSON ({type(e).__name__})"), {}
        return
    if b"\\u" in line and unpaired_surrogate(json.dumps(record, ensure_ascii=False)) is not None:
        # "\ud800" is valid JSON but no text: the tokenizer and the UTF-8 output would both fail on it
        yield where, InputError(f"{where}: line: unpaired surrogate escape; not valid Unicode text"), {}
        return
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        yield where, InputError(f"{where}: text: missing or not a string"), {}
    elif not text.strip():
        yield where, InputError(f"{where}: text: empty or whitespace-only"), {}
    else:
        yield where, text, {k: v for k, v in record.items() if k != "text"}


def _from_jsonl(path: Path):
    with path.open("rb") as f:  # streamed line by line: memory stays flat on large files
        for number, line in enumerate(f, 1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if line.strip():
                yield from _jsonl_line(f"{path}:{number}", line)


def _from_csv(path: Path, column: str):
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
        reader = csv.DictReader(handle)
        if column not in (reader.fieldnames or []):
            raise InputError(f"{path}:1: {column}: no such column; columns are {reader.fieldnames} "
                             f"(choose one with column=NAME)")
        for number, row in enumerate(reader, 2):
            text = row.pop(column) or ""
            where = f"{path}:{number}"
            yield (where, text, row) if text.strip() else (where, InputError(f"{where}: {column}: empty"), {})
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: text: invalid UTF-8 at byte {e.start}") from None


def label_records(clf: Classifier, records, mode: str, batch_size: int):
    """Predictions for a chunk of (where, text, fields) records, in order."""
    if mode == "article":
        out = []
        for where, text, fields in records:
            art = clf.predict_article(text, batch_size)
            out.append({**fields, **{k: v for k, v in art.items() if k != "paragraphs"},
                        "paragraphs": art["paragraphs"]})
        return out
    preds = clf.predict([text for _, text, _ in records], batch_size)
    return [{**fields, "text": text, **p} for (_, text, fields), p in zip(records, preds)]


def to_csv_row(record: dict) -> dict:
    flat = {}
    for k, v in record.items():
        if k == "paragraphs":
            flat["paragraphs"] = len(v)
        elif isinstance(v, list):
            flat[k] = ";".join(map(str, v))
        elif isinstance(v, dict):
            flat.update({f"{k.removesuffix('_scores')}:{label}": s for label, s in v.items()})
        else:
            flat[k] = v
    return flat


def run(cfg) -> dict:
    """Label every input record; returns counts {"written": n, "skipped": n}."""
    if cfg.mode not in ("paragraph", "article"):
        raise InputError(f"mode={cfg.mode}: expected paragraph or article")
    if cfg.on_error not in ("fail", "skip"):
        raise InputError(f"on_error={cfg.on_error}: expected fail or skip")
    try:
        clf = Classifier.from_pretrained(project_path(cfg.model_dir), threads=cfg.threads,
                                         precision=cfg.precision, engine=cfg.engine)
    except ValueError as e:  # an engine or precision that does not exist, or does not go together
        raise InputError(str(e)) from None
    out_path = None if cfg.output in ("-", None) else Path(cfg.output)
    fmt = cfg.output_format if cfg.output_format != "auto" else (
        "csv" if out_path is not None and out_path.suffix == ".csv" else "jsonl")
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}") if out_path else None
    sink = tmp.open("w", encoding="utf-8", newline="") if tmp else sys.stdout
    counts, writer = {"written": 0, "skipped": 0}, None
    try:
        chunk = []
        progress = _progress(cfg)
        for where, text, fields in read_inputs(cfg.input, cfg.input_format, cfg.column,
                                               split_paragraphs=cfg.mode == "paragraph"):
            if isinstance(text, InputError):
                if cfg.on_error == "fail":
                    raise text
                print(f"skipped {text}", file=sys.stderr)
                counts["skipped"] += 1
                continue
            chunk.append((where, text, fields))
            if len(chunk) >= cfg.chunk_size:
                writer = _write(sink, label_records(clf, chunk, cfg.mode, cfg.batch_size), fmt, writer, counts)
                progress.update(len(chunk))
                chunk = []
        if chunk:
            writer = _write(sink, label_records(clf, chunk, cfg.mode, cfg.batch_size), fmt, writer, counts)
            progress.update(len(chunk))
        progress.close()
    except BaseException:
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
    from tqdm.auto import tqdm

    return tqdm(unit=cfg.mode, file=sys.stderr, disable=not cfg.progress, desc="labelling")


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
    except (InputError, ModelFolderError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
