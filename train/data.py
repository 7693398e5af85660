"""Corpus files: loading with validation, split checks, and counts.

Records are JSON lines in the annotation guide's format (`id`, `text`, `lang`, one field per task
of the label schema, `source`, optional `doc_id`). Every problem is reported as
`file:line: field: message`, all of them in one pass, and nothing is trained on a file with one.

    python -m train.data validate            # the corpus named in configs/data/news.yaml
    python -m train.data validate --data sib200
    python -m train.data validate mine.jsonl more.jsonl   # any corpus-format files (and overlaps among them)
    python -m train.data stats               # counts per split x language x label
    python -m train.data stats mine.jsonl
"""

import argparse
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

from train.labels import MULTI, LabelSchema

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LANG_CODE = re.compile(r"^[a-z]{2,3}$")  # ISO 639-1 (or -3 where no two-letter code exists)
NEAR_DUPLICATE_COSINE = 0.9
log = logging.getLogger(__name__)


class DataError(Exception):
    """One or more `file:line: field: message` problems."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def read_records(path: Path, schema: LabelSchema, labelled: bool = True) -> tuple[list[dict], list[str]]:
    """Parse a JSONL file; return (valid records, problems). Records keep their line number."""
    path = Path(path)
    if not path.is_file():
        return [], [f"{path}:0: file: not found (or not a regular file)"]
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return [], [f"{path}:0: file: looks binary (NUL bytes), expected UTF-8 JSON lines"]
    records, problems = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # tolerate a byte-order mark
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            problems.append(f"{where}: line: invalid UTF-8 at byte {e.start}")
            continue
        except json.JSONDecodeError as e:
            problems.append(f"{where}: line: invalid JSON ({e.msg} at column {e.colno})")
            continue
        except (ValueError, RecursionError) as e:  # an integer over 4300 digits; nesting deeper than the stack
            problems.append(f"{where}: line: unreadable JSON ({type(e).__name__}: {str(e)[:80]})")
            continue
        found = check_record(record, schema, labelled)
        problems += [f"{where}: {p}" for p in found]
        if not found:
            record["_line"] = number
            records.append(record)
    if not records and not problems:
        problems.append(f"{path}:0: file: no records (empty file)")
    return records, problems


def check_record(record, schema: LabelSchema, labelled: bool) -> list[str]:
    """Problems of one parsed record, as `field: message` strings."""
    if not isinstance(record, dict):
        return [f"record: expected a JSON object, got {type(record).__name__}"]
    problems = []
    for field in ("id", "text", "lang"):
        value = record.get(field)
        if field not in record:
            problems.append(f"{field}: missing")
        elif not isinstance(value, str):
            problems.append(f"{field}: expected a string, got {type(value).__name__}")
        elif not value.strip():
            problems.append(f"{field}: empty or whitespace-only")
        elif (at := unpaired_surrogate(value)) is not None:
            problems.append(f"{field}: unpaired surrogate \\u{ord(value[at]):04x} at character {at}; "
                            f"not valid Unicode text")
    if isinstance(record.get("lang"), str) and record["lang"].strip() and not LANG_CODE.match(record["lang"]):
        problems.append(f"lang: {record['lang']!r} is not a lower-case ISO 639 code such as 'en', 'es', 'ko'")
    for field in ("source", "doc_id", "headline"):
        if field in record and not isinstance(record[field], str):
            problems.append(f"{field}: expected a string, got {type(record[field]).__name__}")
    if not labelled:
        return problems
    for task in schema.tasks:
        gold = record.get(task.name)
        if task.name not in record:
            problems.append(f"{task.name}: missing")
        elif task.kind == MULTI:
            if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
                problems.append(f"{task.name}: expected a list of labels, got {json.dumps(gold)}")
            else:
                unknown = [g for g in gold if g not in task.labels]
                if unknown:
                    problems.append(f"{task.name}: unknown label(s) {unknown}; known: {list(task.labels)}")
                if len(set(gold)) != len(gold):
                    problems.append(f"{task.name}: repeated label in {gold}")
        elif gold not in task.labels:
            problems.append(f"{task.name}: unknown label {json.dumps(gold)}; known: {list(task.labels)}")
    return problems


def unpaired_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate (JSON allows "\\ud800", no text encoding does), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def load_split(path, schema: LabelSchema, labelled: bool = True) -> list[dict]:
    """Records of one file, or DataError listing every problem in it."""
    records, problems = read_records(Path(path), schema, labelled)
    if problems:
        raise DataError(problems)
    return records


def limit(records, n, seed):
    """A seeded sample of at most `n` records (all of them when n is None)."""
    import numpy as np

    if n is None or n >= len(records):
        return records
    keep = np.random.default_rng(seed).choice(len(records), size=n, replace=False)
    return [records[i] for i in sorted(keep)]


def normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def check_splits(splits: dict[str, list[dict]], paths: dict[str, Path]) -> list[str]:
    """Duplicate ids anywhere; documents, texts or near-duplicate texts shared by two splits."""
    problems, seen_ids, doc_split, text_split = [], {}, {}, {}
    for name, records in splits.items():
        for r in records:
            where = f"{paths[name]}:{r['_line']}"
            if r["id"] in seen_ids:
                problems.append(f"{where}: id: duplicate id {r['id']!r} (first at {seen_ids[r['id']]})")
            seen_ids.setdefault(r["id"], where)
            doc = r.get("doc_id")
            if doc and doc_split.setdefault(doc, name) != name:
                problems.append(f"{where}: doc_id: document {doc!r} is also in split {doc_split[doc]!r}")
            key = normalise(r["text"])
            if key and text_split.setdefault(key, (name, where))[0] != name:
                problems.append(f"{where}: text: same text as {text_split[key][1]} in another split")
    return problems + near_duplicates(splits, paths)


def near_duplicates(splits: dict[str, list[dict]], paths: dict[str, Path]) -> list[str]:
    """Pairs of texts in different splits whose character n-gram TF-IDF cosine is >= 0.9."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    names = [n for n in splits if splits[n]]
    if len(names) < 2:
        return []
    texts = [normalise(r["text"]) for n in names for r in splits[n]]
    owner = [(n, r) for n in names for r in splits[n]]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=1).fit_transform(texts)
    problems, offset = [], 0
    bounds = {}
    for n in names:
        bounds[n] = (offset, offset + len(splits[n]))
        offset += len(splits[n])
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (a0, a1), (b0, b1) = bounds[a], bounds[b]
            sims = (matrix[a0:a1] @ matrix[b0:b1].T).tocoo()
            for row, col, value in zip(sims.row, sims.col, sims.data):
                if value >= NEAR_DUPLICATE_COSINE and texts[a0 + row] != texts[b0 + col]:  # same text: said above
                    ra, rb = owner[a0 + row][1], owner[b0 + col][1]
                    problems.append(f"{paths[b]}:{rb['_line']}: text: near-duplicate (cosine {value:.2f}) "
                                    f"of {paths[a]}:{ra['_line']} in split {a!r}")
    return problems


def data_config(name: str):
    """The data group config `configs/data/<name>.yaml` (paths and schema), with the configs its
    defaults list names merged in as Hydra would (e.g. news_plus_mine.yaml builds on news.yaml)."""
    from omegaconf import OmegaConf

    path = PROJECT_ROOT / "configs" / "data" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"unknown data config {name!r}: {path} not found")
    own = OmegaConf.load(path)
    defaults = list(own.pop("defaults", []))
    if "_self_" not in defaults:
        defaults.append("_self_")
    return OmegaConf.merge(*[own if d == "_self_" else data_config(d) for d in defaults])


def project_path(path) -> Path:
    """Relative paths in configs are relative to the project root, wherever the job runs."""
    path = Path(path)
    return path if path.is_absolute() else PROJECT_ROOT / path


def split_paths(cfg) -> dict[str, Path]:
    return {split: project_path(p) for split, p in cfg.files.items()}


def validate(cfg, files: list[Path] | None = None) -> list[str]:
    """Problems of the data config's files (and its extra_files), or of `files` when given: each
    file on its own, then ids, documents and (near-)duplicate texts shared between files."""
    schema = LabelSchema(cfg.schema)
    paths = {str(p): Path(p) for p in files} if files else split_paths(cfg)
    splits, problems = {}, []
    for split, path in paths.items():
        splits[split], found = read_records(path, schema)
        problems += found
    # The seed articles are evaluation data of their own; they must not overlap any split either.
    problems += check_splits(splits, paths)
    return problems if files else problems + extra_file_problems(cfg, schema, splits)


def source_kind(source: str, kinds: dict) -> str:
    return next((kind for prefix, kind in kinds.items() if source.startswith(prefix)), "other")


def source_table(splits: dict[str, list[dict]], kinds: dict) -> list[str]:
    """Paragraphs per source kind (configs/data/<name>.yaml `source_kinds`) and split, with languages."""
    counts = {name: Counter(source_kind(r.get("source", ""), kinds) for r in records) for name, records in splits.items()}
    order = list(dict.fromkeys([*kinds.values(), "other"]))
    width = max(map(len, order)) + 2
    lines = ["\nby source kind (paragraphs)", f"  {'kind':<{width}}" + "".join(f"{n:>14}" for n in splits)
             + f"{'all':>7}  languages"]
    for kind in order:
        total = sum(c[kind] for c in counts.values())
        if total:
            langs = Counter(r["lang"] for records in splits.values() for r in records
                            if source_kind(r.get("source", ""), kinds) == kind)
            lines.append(f"  {kind:<{width}}" + "".join(f"{counts[n][kind]:>14}" for n in splits) + f"{total:>7}  "
                         + ", ".join(f"{lang} {n}" for lang, n in langs.most_common()))
    return lines


def stats(cfg, files: list[Path] | None = None) -> str:
    schema = LabelSchema(cfg.schema)
    lines, splits = [], {}
    paths = {str(p): Path(p) for p in files} if files else {**split_paths(cfg), **extra_paths(cfg)}
    for split, path in paths.items():
        records = splits[split] = load_split(path, schema)
        langs = Counter(r["lang"] for r in records)
        name = str(path) if split == str(path) else f"{split} ({path})"
        lines.append(f"\n{name}: {len(records)} records, {len(langs)} languages")
        columns = sorted(langs, key=lambda l: (-langs[l], l))
        width = max(len(f"{t.name}: {lab}") for t in schema.tasks for lab in t.labels) + 2
        lines.append(f"  {'label':<{width}}" + "".join(f"{l:>6}" for l in columns) + f"{'all':>7}")
        rows = [("records", lambda r: True)]
        for task in schema.tasks:
            if task.kind == MULTI:
                rows.append((f"{task.name}: (none)", lambda r, t=task: not r[t.name]))
            rows += [(f"{task.name}: {lab}", lambda r, t=task, lab=lab: lab in r[t.name]
                      if t.kind == MULTI else r[t.name] == lab) for lab in task.labels]
        for label, match in rows:
            counts = Counter(r["lang"] for r in records if match(r))
            lines.append(f"  {label:<{width}}" + "".join(f"{counts[l]:>6}" for l in columns)
                         + f"{sum(counts.values()):>7}")
    if cfg.get("source_kinds"):
        lines += source_table(splits, dict(cfg.source_kinds))
    return "\n".join(lines)

# -- data.extra_files: labelled files of one's own added to the training split ----------------
# Each file is validated like the corpus and refused if any of its records shares an id, a document
# or a text (same or near-duplicate) with an evaluation file (every `data.files` entry but `train`):
# a model trained on a test paragraph would be scored on its own training data. Texts that repeat
# the training split are allowed (they weigh twice, nothing leaks).
#   python -m train data.extra_files=[data/mine.jsonl]
#   python -m train data=news_plus_mine              # configs/data/news_plus_mine.yaml
#   python -m train.data validate --data news_plus_mine


def extra_paths(data_cfg) -> dict[str, Path]:
    """{name: path} of the data config's `extra_files` (absent or empty: none)."""
    return {f"extra:{path}": project_path(path) for path in (data_cfg.get("extra_files") or [])}


def extra_file_problems(data_cfg, schema: LabelSchema, splits: dict[str, list[dict]] | None = None) -> list[str]:
    """Every problem of the extra files: their own records, and overlaps with the evaluation files
    or with each other. `splits`: the data config's files already read (read here when None)."""
    return _read_and_check(data_cfg, schema, splits)[1]


def load_extra_files(data_cfg, schema: LabelSchema) -> list[dict]:
    """The extra files' records, in order, or DataError listing every problem (see extra_file_problems)."""
    records, problems = _read_and_check(data_cfg, schema, None)
    if problems:
        raise DataError(problems)
    if records:
        log.info("data.extra_files: %d labelled paragraphs added to the training split from %s", len(records),
                 ", ".join(str(p) for p in extra_paths(data_cfg).values()))
    return records


def _read_and_check(data_cfg, schema, splits) -> tuple[list[dict], list[str]]:
    extra = extra_paths(data_cfg)
    if not extra:
        return [], []
    paths = split_paths(data_cfg)
    held_out, problems = {}, []
    for name, path in paths.items():
        if name == "train":
            continue
        if splits is not None and name in splits:
            held_out[name] = splits[name]
        else:  # an unreadable evaluation file is reported by its own validation; here it only can't be compared
            held_out[name] = read_records(path, schema)[0]
    mine = {}
    for name, path in extra.items():
        mine[name], found = read_records(path, schema)
        problems += found
    # check_splits names the later of two records, and the extra files come last, so each overlap
    # that involves an extra file is reported at the extra file's line (and overlaps among the
    # evaluation files themselves, reported by `validate`, are left out here).
    ours = tuple(f"{p}:" for p in extra.values())
    problems += [p for p in check_splits({**held_out, **mine}, {**paths, **extra}) if p.startswith(ours)]
    return [r for records in mine.values() for r in records], problems


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["validate", "stats"], help="what to do")
    parser.add_argument("files", nargs="*", type=Path,
                        help="JSONL files in the corpus format (default: the data config's files)")
    parser.add_argument("--data", default="news",
                        help="data config in configs/data/: the label schema, and the files when none are given "
                             "(default: news)")
    args = parser.parse_args(argv)
    cfg = data_config(args.data)
    files = list(dict.fromkeys(args.files))  # a file named twice is one file
    if args.command == "stats":
        try:
            print(stats(cfg, files))
        except DataError as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    problems = validate(cfg, files)
    for p in problems:
        print(p, file=sys.stderr)
    count = len(files) if files else len(cfg.files) + len(cfg.get("extra_files") or [])
    print(f"{len(problems)} problem(s) in {count} file(s)", file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
