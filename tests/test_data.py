"""Corpus validation: every problem reported as file:line: field: message, in one run."""

import json
import subprocess
import sys

from conftest import PROJECT, make_records, write_jsonl
from train.data import check_splits, read_records
from train.labels import LabelSchema

NEWS = LabelSchema([{"name": "topics", "kind": "multi_label",
                     "labels": ["summitry", "sanctions", "russia_ties", "inter_korean"]},
                    {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]}])


def test_the_shipped_corpus_validates():
    result = subprocess.run([sys.executable, "-m", "train.data", "validate"], cwd=PROJECT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 problem(s)" in result.stdout


def test_stats_prints_counts_per_split_language_and_label():
    result = subprocess.run([sys.executable, "-m", "train.data", "stats"], cwd=PROJECT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    train_rows = [json.loads(l) for l in (PROJECT / "data/corpus/train.jsonl").open()]
    en_sanctions = sum(r["lang"] == "en" and "sanctions" in r["topics"] for r in train_rows)
    line = next(l for l in result.stdout.splitlines() if "topics: sanctions" in l)
    header = next(l for l in result.stdout.splitlines() if l.strip().startswith("label"))
    column = header.split().index("en")
    assert int(line.split()[column + 1]) == en_sanctions  # "topics:" "sanctions" take two columns


def test_every_problem_in_a_file_is_reported_with_file_line_and_field(tmp_path):
    lines = [
        json.dumps({"id": "a", "text": "ok", "lang": "en", "topics": [], "stance": "neutral"}),
        "{not json",
        json.dumps({"id": "b", "text": "", "lang": "en", "topics": [], "stance": "neutral"}),
        json.dumps({"id": "c", "text": "x", "lang": "en", "topics": ["war"], "stance": "angry"}),
        json.dumps({"id": 4, "text": "x", "lang": "EN", "topics": "summitry", "stance": "neutral"}),
        json.dumps(["not", "an", "object"]),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode() + b'{"id": "d", "text": "\xff"}\n')
    records, problems = read_records(path, NEWS)
    assert [r["id"] for r in records] == ["a"]  # Windows line endings are fine
    expected = [f"{path}:2: line: invalid JSON", f"{path}:3: text: empty or whitespace-only",
                f"{path}:4: topics: unknown label(s) ['war']", f"{path}:4: stance: unknown label \"angry\"",
                f"{path}:5: id: expected a string", f"{path}:5: lang: 'EN' is not",
                f"{path}:5: topics: expected a list", f"{path}:6: record: expected a JSON object",
                f"{path}:7: line: invalid UTF-8"]
    for prefix in expected:
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert len(problems) == len(expected)


def test_empty_binary_and_missing_files_are_named(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blob.jsonl").write_bytes(b"\x00\x01\x02binary")
    for name, message in [("empty.jsonl", "no records"), ("blob.jsonl", "looks binary"), ("nope.jsonl", "not found")]:
        _, problems = read_records(tmp_path / name, NEWS)
        assert problems == [p for p in problems if p.startswith(f"{tmp_path / name}:0: file: ")]
        assert message in problems[0]


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = write_jsonl(tmp_path / "bom.jsonl", make_records(2, 0))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    records, problems = read_records(path, NEWS)
    assert len(records) == 2 and problems == []


def test_split_checks_catch_shared_documents_duplicate_ids_and_near_duplicates(tmp_path):
    base = "Kim Jong Un and Vladimir Putin signed a treaty on comprehensive strategic partnership in Pyongyang."
    train = [{"id": "t1", "text": base, "doc_id": "d1", "_line": 1},
             {"id": "t2", "text": "Sanctions relief was discussed in Hanoi.", "doc_id": "d2", "_line": 2}]
    test = [{"id": "s1", "text": base.replace("Pyongyang", "Pyongyang on Wednesday"), "doc_id": "d3", "_line": 1},
            {"id": "t2", "text": "Completely different words about the weather.", "doc_id": "d2", "_line": 2}]
    paths = {"train": tmp_path / "train.jsonl", "test": tmp_path / "test.jsonl"}
    problems = check_splits({"train": train, "test": test}, paths)
    assert any(p.startswith(f"{paths['test']}:2: id: duplicate id 't2'") for p in problems)
    assert any(p.startswith(f"{paths['test']}:2: doc_id: document 'd2'") for p in problems)
    assert any(p.startswith(f"{paths['test']}:1: text: near-duplicate") for p in problems)
    assert len(problems) == 3
