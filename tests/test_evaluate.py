"""The evaluation job on a tiny model: the report folder is complete, every figure in metrics.json
matches scikit-learn on predictions.jsonl, tuned thresholds never lose to 0.5 on validation and are
what inference then uses, seed articles aggregate by the guide, and bad input stops with a message."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, hamming_loss,
                             precision_recall_fscore_support)

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train.articles import aggregate
from train.evaluate import EvaluationError, evaluate
from train.fit import train
from train.inference import Classifier, ModelFolderError

TOPICS = ["summitry", "sanctions", "russia_ties", "inter_korean"]
STANCES = ["positive", "negative", "neutral"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    """Two tiny models trained on one tiny corpus, plus a seeds split of six four-paragraph articles."""
    tmp = tmp_path_factory.mktemp("evaluate")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 30)])}
    seeds = make_records(24, 7, "se")
    for i, r in enumerate(seeds):
        r["doc_id"] = f"doc-{i // 4}"
    files["seeds"] = write_jsonl(tmp / "data/seeds.jsonl", seeds)
    articles = [{"doc_id": f"doc-{k}", "topics": ["sanctions"], "stance": "negative"} for k in range(3)]
    write_jsonl(tmp / "data/articles.jsonl", articles)
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        for name, seed in (("tiny-a", 42), ("tiny-b", 7)):
            train(compose("train", overrides=tiny_overrides(tmp, tiny_model_dir, files, run_name=name, seed=seed)))
    return {"tmp": tmp, "files": files, "models": [tmp / "models/tiny-a", tmp / "models/tiny-b"]}


def eval_cfg(setup, out, **extra):
    files = setup["files"]
    values = {"models": f"['{setup['models'][0]}']", "out_dir": str(out), "progress": False,
              "bootstrap.resamples": 50, "seed_articles": str(setup["tmp"] / "data/articles.jsonl"),
              **{f"data.files.{s}": str(p) for s, p in files.items()}}
    values.update(extra)
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        return compose("evaluate", overrides=[f"{k}={v}" for k, v in values.items()])


def hot(label_lists):
    return np.array([[t in labels for t in TOPICS] for labels in label_lists], dtype=int)


@pytest.fixture(scope="module")
def test_report(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "test-run"
    return out, evaluate(eval_cfg(setup, out))


def test_the_report_folder_holds_every_file_and_nothing_half_written(test_report):
    out, result = test_report
    for name in ("report.md", "metrics.json", "predictions.jsonl", "f1_per_label.png", "reliability.png",
                 "confusion_tiny-a.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert [p.name for p in out.parent.iterdir()] == ["test-run"]  # the temporary folder was renamed
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert set(result["systems"]) == {"tiny-a", "majority", "tfidf_logreg", "embedding_probe"}
    report = (out / "report.md").read_text()
    for heading in ("## Summary", "### Margins over the baselines", "## Per language", "## Calibration",
                    "### Most confident topics errors", "![Reliability diagrams](reliability.png)"):
        assert heading in report, heading


def test_every_figure_matches_scikit_learn_on_predictions_jsonl(test_report):
    out, _ = test_report
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["split"]["paragraphs"] == 30
    gold_topics = hot([r["gold"]["topics"] for r in rows])
    gold_stance = [r["gold"]["stance"] for r in rows]
    for name, system in metrics["systems"].items():
        for at, field in (("tuned", "topics"), ("at_0.5", "topics_at_0.5")):
            pred = hot([r["predictions"][name][field] for r in rows])
            scores = system["topics"][at]
            p, r, f, s = precision_recall_fscore_support(gold_topics, pred, average=None, zero_division=0)
            for k, topic in enumerate(TOPICS):
                assert scores["per_label"][topic] == pytest.approx(
                    {"precision": p[k], "recall": r[k], "f1": f[k], "support": s[k]}), (name, at, topic)
            assert scores["micro_f1"] == pytest.approx(f1_score(gold_topics, pred, average="micro", zero_division=0))
            assert scores["macro_f1"] == pytest.approx(f1_score(gold_topics, pred, average="macro", zero_division=0))
            assert scores["subset_accuracy"] == pytest.approx(accuracy_score(gold_topics, pred))
            assert scores["hamming_loss"] == pytest.approx(hamming_loss(gold_topics, pred))
            empty = ~gold_topics.any(axis=1)
            assert scores["empty_kept"] == pytest.approx(np.mean(~pred[empty].any(axis=1)))
            if at == "tuned" or system["kind"] == "model":  # baselines are shown at tuned thresholds only
                low, high = scores["macro_f1_ci"]
                assert 0 <= low <= high <= 1
        stance = [r["predictions"][name]["stance"] for r in rows]
        assert system["stance"]["accuracy"] == pytest.approx(accuracy_score(gold_stance, stance))
        assert system["stance"]["macro_f1"] == pytest.approx(
            f1_score(gold_stance, stance, labels=STANCES, average="macro", zero_division=0))
        assert system["stance"]["confusion_matrix"] == confusion_matrix(gold_stance, stance, labels=STANCES).tolist()
        for lang, figures in system["per_language"].items():
            mine = [i for i, r in enumerate(rows) if r["lang"] == lang]
            assert figures["paragraphs"] == len(mine)
            assert figures["stance_macro_f1"] == pytest.approx(f1_score(
                [gold_stance[i] for i in mine], [stance[i] for i in mine], labels=STANCES, average="macro",
                zero_division=0))
            pred = hot([rows[i]["predictions"][name]["topics"] for i in mine])
            assert figures["topics_macro_f1"] == pytest.approx(
                f1_score(gold_topics[mine], pred, average="macro", zero_division=0))
    model = metrics["systems"]["tiny-a"]
    for baseline, margin in metrics["margins"]["tiny-a"].items():
        other = metrics["systems"][baseline]
        assert margin["topics_macro_f1"] == pytest.approx(model["topics"]["tuned"]["macro_f1"]
                                                          - other["topics"]["tuned"]["macro_f1"])
        assert margin["stance_macro_f1"] == pytest.approx(model["stance"]["macro_f1"] - other["stance"]["macro_f1"])


def test_thresholds_are_tuned_saved_and_used_by_inference(setup, test_report):
    _, result = test_report
    saved = json.loads((setup["models"][0] / "thresholds.json").read_text())
    assert set(saved) == {"topics"} and set(saved["topics"]) == set(TOPICS)
    assert all(0.05 <= v <= 0.95 for v in saved["topics"].values())
    assert result["systems"]["tiny-a"]["thresholds"] == saved
    clf = Classifier.from_pretrained(setup["models"][0])
    assert clf.thresholds == saved
    text = "seoul summit hopeful"
    scores = clf.predict([text])[0]["topics_scores"]
    assert clf.predict([text])[0]["topics"] == [t for t in TOPICS if scores[t] >= saved["topics"][t]]


def test_tuned_thresholds_beat_or_match_0_5_on_validation(setup, tmp_path):
    result = evaluate(eval_cfg(setup, tmp_path / "val", split="validation", tune_thresholds=True, baselines=False))
    assert result["split"]["thresholds_tuned_on_this_split"]
    topics = result["systems"]["tiny-a"]["topics"]
    assert topics["tuned"]["macro_f1"] >= topics["at_0.5"]["macro_f1"] - 1e-12
    for topic in TOPICS:
        assert topics["tuned"]["per_label"][topic]["f1"] >= topics["at_0.5"]["per_label"][topic]["f1"] - 1e-12


def test_seed_articles_are_aggregated_by_the_guides_rule(setup, tmp_path):
    result = evaluate(eval_cfg(setup, tmp_path / "seeds", split="seeds", baselines=False, **{"bootstrap.resamples": 0}))
    articles = result["systems"]["tiny-a"]["articles"]
    assert articles["articles"] == 6 and articles["gold_from_file"] == 3
    rows = [json.loads(line) for line in (tmp_path / "seeds/predictions.jsonl").read_text().splitlines()]
    for doc in articles["documents"]:
        paragraphs = [r for r in rows if r["doc_id"] == doc["doc_id"]]
        assert doc["predicted"] == aggregate([{"text": r["text"], **r["predictions"]["tiny-a"]} for r in paragraphs])
        if doc["doc_id"] in ("doc-0", "doc-1", "doc-2"):
            assert doc["gold"] == {"topics": ["sanctions"], "stance": "negative"}
        else:
            assert doc["gold"] == aggregate([{"text": r["text"], **r["gold"]} for r in paragraphs])
    gold = [d["gold"]["stance"] for d in articles["documents"]]
    pred = [d["predicted"]["stance"] for d in articles["documents"]]
    assert articles["stance"]["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert articles["topics"]["macro_f1"] == pytest.approx(f1_score(
        hot([d["gold"]["topics"] for d in articles["documents"]]),
        hot([d["predicted"]["topics"] for d in articles["documents"]]), average="macro", zero_division=0))
    assert "## Articles" in (tmp_path / "seeds/report.md").read_text()


def test_two_models_get_one_comparison_table(setup, tmp_path):
    a, b = setup["models"]
    result = evaluate(eval_cfg(setup, tmp_path / "two", models=f"['{a}','{b}']", baselines=False,
                               **{"bootstrap.resamples": 0}))
    assert list(result["systems"]) == ["tiny-a", "tiny-b"]
    report = (tmp_path / "two/report.md").read_text()
    assert report.count("## Comparison") == 1
    section = report.split("## Comparison\n", 1)[1].split("\n#", 1)[0]
    assert [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| **")] == \
        ["| **tiny-a**", "| **tiny-b**"]
    assert (tmp_path / "two/confusion_tiny-b.png").is_file()


def test_bad_input_stops_before_any_work(setup, tmp_path):
    with pytest.raises(EvaluationError, match="unknown split 'tset'"):
        evaluate(eval_cfg(setup, tmp_path / "x", split="tset"))
    with pytest.raises(ModelFolderError, match="model folder not found"):
        evaluate(eval_cfg(setup, tmp_path / "x", models=f"['{tmp_path / 'nope'}']"))
    other = [{"name": "topics", "kind": "multi_label", "labels": ["a", "b"]},
             {"name": "stance", "kind": "single_label", "labels": STANCES}]
    with pytest.raises(EvaluationError, match="differs from the label schema of data config 'news'"):
        evaluate(eval_cfg(setup, tmp_path / "x", **{"data.schema": json.dumps(other).replace('"', "")}))
    assert not (tmp_path / "x").exists()


def run_cli(args):
    env = dict(os.environ, HYDRA_FULL_ERROR="0", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "train.evaluate", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_command_line_gives_one_clear_message_and_exit_code_2(setup, tmp_path):
    result = run_cli(["split=tset", f"models=['{setup['models'][0]}']", f"out_dir={tmp_path / 'r'}"])
    assert result.returncode == 2
    assert "unknown split 'tset'" in result.stderr and "Traceback" not in result.stderr
    missing = tmp_path / "no-model"
    result = run_cli([f"models=['{missing}']", f"out_dir={tmp_path / 'r'}"])
    assert result.returncode == 2
    assert f"{missing}: model folder not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
