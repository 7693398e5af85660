"""A user's own labelled files: validate and count any corpus-format file, and add files to the
training split (`data.extra_files`) without ever training on an evaluation text."""

import json
import logging
import pytest

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train.data import DataError, data_config
from train.data import main as data_main
from train.fit import train

# Texts no tiny-corpus record is near (the tiny corpus's shuffled cue words are near one another).
MINE = ["Busan hosted a regional trade fair where shipbuilders showed container vessels to buyers.",
        "Customs officers in Dandong reported fewer trucks crossing the bridge during the holiday.",
        "A Vladivostok ferry line resumed weekly sailings after the winter ice had cleared.",
        "Farmers near Kaesong complained that the spring drought had ruined the early rice crop.",
        "The Sapporo fishing cooperative asked Tokyo for compensation after poor squid catches.",
        "Tour guides at Panmunjom say visitor numbers doubled since the road was repaved last May."]
OTHERS = ["A Gwangju bakery chain opened its fortieth shop with a queue around the block.",
          "Heavy snow closed three mountain passes in Gangwon province overnight.",
          "Incheon airport handled a record number of transit passengers in August.",
          "The national orchestra premiered a cello concerto by a young composer from Daegu.",
          "Shipping rates from Ulsan to Rotterdam fell for the third month running.",
          "Jeju's tangerine growers expect a smaller but sweeter harvest this winter."]


def my_records(prefix="mine", texts=MINE):
    stances = ["positive", "negative", "neutral"]
    return [{"id": f"{prefix}-{i}", "text": text, "lang": "en", "topics": ["summitry"] if i % 2 else [],
             "stance": stances[i % 3], "source": "my outlet", "doc_id": f"{prefix}-doc-{i}"}
            for i, text in enumerate(texts)]


def run_data(capsys, *args):
    """`python -m train.data ARGS`, in this process: (exit code, stdout, stderr)."""
    code = data_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_takes_any_files_and_checks_overlaps_among_them(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", my_records())
    code, out, err = run_data(capsys, "validate", good)
    assert code == 0 and "0 problem(s) in 1 file(s)" in out, err

    other = my_records("other", OTHERS)
    other[1]["text"] = MINE[2]                               # the same text as good.jsonl line 3
    other[2]["text"] = MINE[1].replace("holiday", "holidays")  # a near-duplicate of line 2
    other[3]["topics"] = ["nukes"]
    other[4]["doc_id"] = "mine-doc-0"                        # a document of good.jsonl
    second = write_jsonl(tmp_path / "second.jsonl", other)
    code, _, err = run_data(capsys, "validate", good, second)
    assert code == 1
    for expected in (f"{second}:2: text: same text as {good}:3", f"{second}:3: text: near-duplicate",
                     f"{second}:4: topics: unknown label(s) ['nukes']", f"{second}:5: doc_id: document 'mine-doc-0'"):
        assert expected in err, (expected, err)
    assert "4 problem(s) in 2 file(s)" in err


def test_stats_counts_any_file(tmp_path, capsys):
    mine = write_jsonl(tmp_path / "mine.jsonl", my_records())
    code, out, err = run_data(capsys, "stats", mine)
    assert code == 0, err
    assert f"{mine}: 6 records, 1 languages" in out
    assert [l.split()[-1] for l in out.splitlines() if "topics: summitry" in l] == ["3"]


def test_the_example_data_config_composes_news_with_extra_files(capsys):
    cfg = data_config("news_plus_mine")
    news = data_config("news")
    assert cfg.name == "news_plus_mine" and list(cfg.extra_files) == ["data/mine.jsonl"]
    assert cfg.files == news.files and cfg.schema == news.schema and list(news.extra_files) == []
    code, _, err = run_data(capsys, "validate", "--data", "news_plus_mine")  # data/mine.jsonl is the user's to write
    assert code == 1 and f"{PROJECT / 'data/mine.jsonl'}:0: file: not found" in err
    assert "1 problem(s) in 6 file(s)" in err  # train, validation, test, cross_source, seeds + mine


def test_extra_files_join_the_training_split(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg, caplog):
    mine = write_jsonl(tmp_path / "mine.jsonl", my_records())
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 1, "data.extra_files": f"[{mine}]"}))
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert f"data.extra_files: 6 labelled paragraphs added to the training split from {mine}" in caplog.text
    assert "data: 102 training and 24 validation paragraphs" in caplog.text  # 96 + 6


def test_extra_files_that_repeat_an_evaluation_text_are_refused(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    test_line = json.loads(tiny_corpus["test"].read_text().splitlines()[4])
    records = my_records()
    records[2]["text"] = test_line["text"]
    records[3]["stance"] = "angry"
    mine = write_jsonl(tmp_path / "mine.jsonl", records)
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"data.extra_files": f"[{mine}]"}))
    with pytest.raises(DataError) as caught:
        train(cfg)
    assert caught.value.problems == [f"{mine}:4: stance: unknown label \"angry\"; known: ['positive', 'negative', 'neutral']",
                                     f"{mine}:3: text: same text as {tiny_corpus['test']}:5 in another split"]
    assert not (tmp_path / "models").exists()


def test_load_errors_name_every_problem_at_once(tmp_path, tiny_corpus, compose_cfg, tiny_model_dir):
    from train.data import load_extra_files
    from train.labels import LabelSchema

    a = write_jsonl(tmp_path / "a.jsonl", my_records("a"))
    b = write_jsonl(tmp_path / "b.jsonl", my_records("a"))  # same ids, documents and texts as a.jsonl
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"data.extra_files": f"[{a},{b}]"}))
    with pytest.raises(DataError) as caught:
        load_extra_files(cfg.data, LabelSchema(cfg.data.schema))
    assert len(caught.value.problems) == 6 * 3 and all(p.startswith(f"{b}:") for p in caught.value.problems)
