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

from train.articles import split_paragraphs as split_text
from train.data import project_path, unpaired_surrogate
from train.files import remove_stale_temps, temp_path
from train.inference import ENGINES, PRECISIONS, Classifier, ModelFolderError
from train.options import OptionError, boolean, one_of, positive_int

PREDICTION_KEY, CSV_PREFIX = "prediction", "pred_"  # where the model's output goes in each record
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}  # anything else is read as text
# Python's csv module refuses fields over 131,072 characters by default; a pasted article can be megabytes.
csv.field_size_limit(2**31 - 1)


class InputError(Exception):
    pass


def check_options(cfg) -> dict:
    """Every option, the input and the output path, checked before any model is loaded. Returns
    {"input": Path or None (stdin), "input_format", "output": Path or None (stdout), "output_format"}."""
    one_of("mode", cfg.mode, ("paragraph", "article"))
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


def text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())  # not a folder named x.txt


def check_output(output: Path, given: str, source: Path | None):
    """InputError naming the user's path unless `output` can be written: not a folder, its folder
    exists, and it is not the input (which would be overwritten while being read)."""
    if output.is_dir():
        raise InputError(f"output={given}: is a folder; name a file (e.g. output={Path(given) / 'labels.jsonl'})")
    if not output.parent.is_dir():
        raise InputError(f"output={given}: folder {output.parent} does not exist; create it first")
    if source is not None and output.resolve() == source.resolve():
        raise InputError(f"output={given}: is the input file; choose another output (the input would be overwritten)")


def read_inputs(source: Path | None, fmt: str, column: str, split_paragraphs: bool = False):
    """Yield (where, text, record), or (where, InputError, {}) for a bad record. `record` holds the
    input's fields unchanged (a JSONL object, a CSV row; for a .txt file its name). A .txt input is
    one article; with `split_paragraphs` it yields the article's paragraphs."""
    if source is None:
        if fmt == "jsonl":
            for number, line in enumerate(sys.stdin.buffer, 1):
                if line.strip():
                    yield from _jsonl_line(f"<stdin>:{number}", line)
        else:
            yield from _from_text("<stdin>", sys.stdin.buffer.read(), split_paragraphs)
    elif source.is_dir():
        for f in text_files(source):
            yield from _from_text(str(f), f.read_bytes(), split_paragraphs)
    elif fmt == "txt":
        yield from _from_text(str(source), source.read_bytes(), split_paragraphs)
    elif fmt == "jsonl":
        yield from _from_jsonl(source)
    else:
        yield from _from_csv(source, column)


def _decode(where, raw: bytes):
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: text: invalid UTF-8 at byte {e.start}") from None


def _from_text(where, raw, split):
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:  # name the line, and the byte within it
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1)
        yield f"{where}:{line}", InputError(f"{where}:{line}: text: invalid UTF-8 at byte {column} of the line"), {}
        return
    if not text.strip():
        yield f"{where}:1", InputError(f"{where}:1: text: empty"), {}
    elif split:
        for i, paragraph in enumerate(split_text(text)):
            yield f"{where}#{i}", paragraph, {"file": where, "paragraph": i, "text": paragraph}
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
    elif PREDICTION_KEY in record:
        yield where, InputError(f"{where}: {PREDICTION_KEY}: the input has this field, and the output puts the "
                                f"model's predictions there; rename it"), {}
    else:
        yield where, text, record


def _from_jsonl(path: Path):
    with path.open("rb") as f:  # streamed line by line: memory stays flat on large files
        for number, line in enumerate(f, 1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if line.strip():
                yield from _jsonl_line(f"{path}:{number}", line)


def _decoded_lines(handle, bad_lines: dict):
    """The file's physical lines as text, endings kept (as csv wants them). A line that is not
    UTF-8 is recorded in `bad_lines` {line number: byte offset} and passed on with U+FFFD in place,
    so the reader stays in step and the record holding it can be skipped."""
    for number, raw in enumerate(handle, 1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad_lines[number] = e.start
            yield raw.decode("utf-8", errors="replace")


def _from_csv(path: Path, column: str):
    """CSV rows as dicts; a record is named by the physical line it starts on (a quoted field may
    span lines), and invalid UTF-8 by the line and byte where it is."""
    bad_lines = {}
    with path.open("rb") as handle:  # bytes: a bad line is reported, not fatal to the whole file
        reader = csv.reader(_decoded_lines(handle, bad_lines))
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise InputError(f"{path}:1: header: {e}") from None
        if bad_lines:
            raise InputError(f"{path}:1: header: invalid UTF-8 at byte {bad_lines[1]} of the line")
        if not header or column not in header:
            raise InputError(f"{path}:1: {column}: no such column; columns are {header or []} "
                             f"(choose one with column=NAME)")
        if any(name.startswith(CSV_PREFIX) for name in header):
            raise InputError(f"{path}:1: header: columns starting with {CSV_PREFIX!r} are where the output puts "
                             f"the model's predictions; rename {[n for n in header if n.startswith(CSV_PREFIX)]}")
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield f"{path}:{start}", InputError(f"{path}:{start}: record: {e}"), {}
                start = reader.line_num + 1
                continue
            first, last, start = start, reader.line_num, reader.line_num + 1
            where = f"{path}:{first}"
            bad = [n for n in range(first, last + 1) if n in bad_lines]
            if not row:  # a blank line
                continue
            if bad:
                yield where, InputError(f"{path}:{bad[0]}: line: invalid UTF-8 at byte {bad_lines[bad[0]]} of the "
                                        f"line"), {}
            elif len(row) != len(header):
                yield where, InputError(f"{where}: record: {len(row)} fields, the header has {len(header)}"), {}
            else:
                record = dict(zip(header, row))
                text = record[column]
                yield (where, text, record) if text.strip() else (where, InputError(f"{where}: {column}: empty"), {})


def label_records(clf: Classifier, records, mode: str, batch_size: int, on_batch=None):
    """Each (where, text, record) as the record unchanged plus the model's output under `prediction`."""
    if mode == "article":
        return [{**record, PREDICTION_KEY: clf.predict_article(text, batch_size, on_batch)}
                for _, text, record in records]
    preds = clf.predict([text for _, text, _ in records], batch_size, on_batch=on_batch)
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
                records = label_records(clf, chunk, cfg.mode, cfg.batch_size, progress.update)
                writer = _write(sink, records, plan["output_format"], writer, counts)
                records_done += len(chunk)
                progress.set_postfix_str(f"{records_done} {cfg.mode}(s)")
                chunk = []
        if chunk:
            records = label_records(clf, chunk, cfg.mode, cfg.batch_size, progress.update)
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
