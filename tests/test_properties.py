"""Property-based tests: arbitrary text never crashes paragraph splitting, windowing or corpus
loading, and none of them loses text."""

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import FILLER, STANCE_CUES, TOPIC_CUES
from train.articles import split_paragraphs
from train.data import read_records
from train.inference import Classifier
from train.labels import LabelSchema

SCHEMA = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["summitry", "sanctions", "russia_ties", "inter_korean"]},
                      {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]}])
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any character but NUL, with line breaks, blank-ish lines and odd spaces over-represented.
CHARS = st.characters(blacklist_characters="\x00")
BREAKS = st.sampled_from(["\n", "\r\n", "\n\n", "\r\n\r\n", "\n \n", "\n\t\u00a0\n", "\r", "\u2028", "\u3000", " ", "\x0b\x0c"])
TEXT = st.lists(st.one_of(st.text(CHARS, max_size=30), BREAKS), max_size=25).map("".join)
VOCAB = list(TOPIC_CUES.values()) + list(STANCE_CUES.values()) + FILLER


def non_space(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


@SETTINGS
@given(TEXT)
@example("\r\n\r\nHeadline\r\n \r\nBody\x85text\n\n\n")
def test_splitting_paragraphs_never_loses_text(text):
    paragraphs = split_paragraphs(text)
    assert non_space("".join(paragraphs)) == non_space(text)
    assert all(p and p == p.strip() for p in paragraphs)


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    """The tiny random BERT with a 16-token window (4 shared), so that short texts need several."""
    from transformers import AutoTokenizer

    # windows only: no forward function needed
    return Classifier(None, AutoTokenizer.from_pretrained(tiny_model_dir), SCHEMA, {}, text_prefix="query: ",
                      window=16, overlap=4)


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(VOCAB), st.text(CHARS, max_size=8)), max_size=120).map(" ".join))
@example("")
def test_windows_cover_every_token_of_any_text(classifier, text):
    windows = classifier.windows(text)
    tok = classifier.tokenizer
    body = tok(text, add_special_tokens=False)["input_ids"]
    head, tail = classifier._special_tokens()
    prefix = tok(classifier.text_prefix, add_special_tokens=False)["input_ids"]
    assert windows and all(len(w) <= classifier.window for w in windows)
    inner = []
    for w in windows:  # every window: specials and the prefix around a slice of the text
        assert w[:len(head) + len(prefix)] == head + prefix and w[len(w) - len(tail):] == tail
        inner.append(w[len(head) + len(prefix):len(w) - len(tail)])
    # consecutive slices share `overlap` tokens; stitched together they are the whole text, in order
    stitched = inner[0] + [t for part in inner[1:] for t in part[classifier.overlap:]]
    assert stitched == body


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)
LABELS = st.sampled_from(["summitry", "sanctions", "russia_ties", "inter_korean", "nukes", "positive", "neutral", ""])
RECORDS = st.fixed_dictionaries(
    {"id": st.text(max_size=5) | JSON_VALUES, "text": st.text(CHARS, max_size=40) | JSON_VALUES,
     "lang": st.sampled_from(["en", "ko", "English", "", " "]) | JSON_VALUES,
     "topics": st.lists(LABELS, max_size=4) | JSON_VALUES, "stance": LABELS | JSON_VALUES},
    optional={"source": st.text(max_size=5) | JSON_VALUES, "doc_id": st.text(max_size=5) | JSON_VALUES})
ADVERSARIAL = [b"\xef\xbb\xbf{}", b'{"id": 1' + b"1" * 5000 + b"}", b"[" * 50_000 + b"]" * 50_000,
               b'{"id": "x", "text": "a\\ud800", "lang": "en", "topics": [], "stance": "neutral"}', b"\r", b""]
UTF8 = lambda text: text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
LINES = st.one_of(
    RECORDS.flatmap(lambda r: st.sampled_from([json.dumps(r), json.dumps(r, ensure_ascii=False)])).map(UTF8),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.text(CHARS, max_size=40).map(UTF8),
    st.binary(max_size=40),
    st.integers(0, len(ADVERSARIAL) - 1).map(ADVERSARIAL.__getitem__))  # deep nesting, 5000-digit numbers...
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<field>[a-z_]+): .+", re.S)


@SETTINGS
@given(st.lists(LINES, max_size=8), st.sampled_from([b"\n", b"\r\n"]))
@example(ADVERSARIAL, b"\n")
def test_reading_any_file_returns_problems_rather_than_raising(lines, newline):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_bytes(newline.join(lines))
        records, problems = read_records(path, SCHEMA)
    physical_lines = newline.join(lines).count(b"\n") + 1  # a generated line may hold line breaks itself
    assert records or problems  # an empty file is a problem too
    for problem in problems:
        found = PROBLEM.match(problem)
        assert found and found["file"] == str(path) and int(found["line"]) <= physical_lines, problem
    for record in records:  # what loads is usable: text encodes, labels are known
        assert record["text"].strip() and record["text"].encode("utf-8")
        assert set(record["topics"]) <= set(SCHEMA.tasks[0].labels) and record["stance"] in SCHEMA.tasks[1].labels
        assert 1 <= record["_line"] <= physical_lines
