"""Labelled files of one's own added to the training split: `data.extra_files=[my.jsonl]`.

Each file is validated like the corpus (`file:line: field: message`) and refused if any of its
records shares an id, a document or a text (same or near-duplicate) with an evaluation file, that
is every `data.files` entry but `train` (validation, test, seeds): a model trained on a test
paragraph would be scored on its own training data. Texts that repeat the training split are
allowed (they weigh twice, nothing leaks).

    python -m train data.extra_files=[data/mine.jsonl]
    python -m train data=news_plus_mine              # configs/data/news_plus_mine.yaml
    python -m train.data validate --data news_plus_mine
"""

import logging
from pathlib import Path

from train.data import DataError, check_splits, project_path, read_records, split_paths
from train.labels import LabelSchema

log = logging.getLogger(__name__)


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
