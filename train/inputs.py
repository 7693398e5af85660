"""Reading the prediction command's input: one article per .txt file (or its paragraphs), JSON
lines with a `text` field, CSV rows with a text column. Every record keeps its fields unchanged and
is named by `file:line` (a CSV record by the physical line it starts on); a bad record comes back
as an InputError in place of its text, so the caller can stop or skip.

    for where, text, record in read_inputs(Path("news.csv"), "csv", column="body"):
        ...                                  # text is an InputError for a bad record
"""

import csv
import json
import sys
from pathlib import Path

from train.articles import split_paragraphs as split_text
from train.data import unpaired_surrogate

PREDICTION_KEY, CSV_PREFIX = "prediction", "pred_"  # where the output puts the model's predictions
# Python's csv module refuses fields over 131,072 characters by default; a pasted article can be megabytes.
csv.field_size_limit(2**31 - 1)


class InputError(Exception):
    pass


def text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())  # not a folder named x.txt


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
