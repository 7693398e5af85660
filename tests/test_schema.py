"""Any label schema from configuration: a 1-task and a 3-task schema train, save, load and predict
through the same code as topics + stance; a model and data with different schemas are refused."""

import json
import random

import pytest
from omegaconf import OmegaConf, open_dict

from conftest import tiny_overrides, write_jsonl
from train.fit import train
from train.inference import Classifier
from train.labels import LabelSchema

THREE_TASKS = [
    {"name": "topics", "kind": "multi_label", "labels": ["summitry", "sanctions", "russia_ties", "inter_korean"]},
    {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]},
    {"name": "urgency", "kind": "single_label", "labels": ["routine", "breaking"]},
]
ONE_TASK = [{"name": "topic", "kind": "single_label", "labels": ["sports", "politics", "travel"]}]
CUES = {"sports": "stadium", "politics": "parliament", "travel": "airport", "routine": "weekly", "breaking": "urgent"}


def one_task_records(n, seed):
    rng = random.Random(seed)
    return [{"id": f"s{seed}-{i}", "text": f"{CUES[label]} " + " ".join(rng.sample(["the", "of", "a", "news", "today"], 3)),
             "lang": "en", "topic": label, "doc_id": f"s{seed}-{i}"}
            for i, label in enumerate(rng.choice(["sports", "politics", "travel"]) for _ in range(n))]


def three_task_records(records, seed):
    rng = random.Random(seed)
    for r in records:
        r["urgency"] = rng.choice(["routine", "breaking"])
        r["text"] += " " + CUES[r["urgency"]]
    return records


def train_with_schema(compose_cfg, tmp_path, model_dir, files, schema, **extra):
    cfg = compose_cfg(tiny_overrides(tmp_path, model_dir, files, **{"trainer.num_train_epochs": 8,
                                                                    "early_stopping_patience": 8, **extra}))
    with open_dict(cfg):
        cfg.data.schema = OmegaConf.create(schema)
    return cfg, train(cfg)


def test_a_one_task_schema_trains_and_predicts_with_its_own_labels(tmp_path, tiny_model_dir, compose_cfg):
    from transformers import pipeline

    files = {s: write_jsonl(tmp_path / f"{s}.jsonl", one_task_records(n, i))
             for i, (s, n) in enumerate([("train", 120), ("validation", 30), ("test", 30)])}
    cfg, metrics = train_with_schema(compose_cfg, tmp_path, tiny_model_dir, files, ONE_TASK)
    assert metrics["topic_accuracy"] > 0.8  # cue words make the task easy
    out = tmp_path / "models/tiny-run"
    assert json.loads((out / "label_schema.json").read_text()) == ONE_TASK
    clf = Classifier.from_pretrained(out)
    assert clf.schema == LabelSchema(ONE_TASK)
    pred = clf.predict(["stadium the news", "airport today"])
    assert [p["topic"] for p in pred] == ["sports", "travel"]
    assert set(pred[0]["topic_scores"]) == {"sports", "politics", "travel"}
    labels = {d["label"] for d in pipeline("text-classification", model=str(out), top_k=None)(["stadium"])[0]}
    assert labels == {"sports", "politics", "travel"}

    # the evaluation job reads the same schema: thresholds, metrics and report for a 1-task model
    from hydra import compose, initialize_config_dir

    from conftest import PROJECT
    from train.evaluate import evaluate

    overrides = [f"models=['{out}']", f"out_dir={tmp_path / 'report'}", "progress=false", "baselines=false",
                 "bootstrap.resamples=20", *[f"data.files.{s}={p}" for s, p in files.items()],
                 f"data.files.seeds={files['test']}"]
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        eval_cfg = compose("evaluate", overrides=overrides)
    with open_dict(eval_cfg):
        eval_cfg.data.schema = OmegaConf.create(ONE_TASK)
        eval_cfg.data.name = "one-task"
    result = evaluate(eval_cfg)
    scores = result["systems"]["tiny-run"]["topic"]
    assert scores["accuracy"] > 0.8 and set(scores["per_label"]) == {"sports", "politics", "travel"}
    assert (tmp_path / "report/report.md").is_file()


def test_a_three_task_schema_keeps_every_slice(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from conftest import make_records

    files = {s: write_jsonl(tmp_path / f"three/{s}.jsonl", three_task_records(make_records(n, i, s[:2]), i))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 24)])}
    _, metrics = train_with_schema(compose_cfg, tmp_path, tiny_model_dir, files, THREE_TASKS)
    assert {"topics_macro_f1", "stance_macro_f1", "urgency_macro_f1"} <= set(metrics)
    clf = Classifier.from_pretrained(tmp_path / "models/tiny-run")
    pred = clf.predict(["urgent seoul summit hopeful"])[0]
    assert pred["urgency"] in ("routine", "breaking") and isinstance(pred["topics"], list)
    config = json.loads((tmp_path / "models/tiny-run/config.json").read_text())
    assert config["id2label"]["7"] == "routine" and len(config["id2label"]) == 9


def test_labels_that_repeat_across_tasks_are_prefixed_in_id2label():
    schema = LabelSchema([{"name": "a", "kind": "single_label", "labels": ["yes", "no"]},
                          {"name": "b", "kind": "single_label", "labels": ["yes", "no"]}])
    assert schema.output_names() == ["a:yes", "a:no", "b:yes", "b:no"]


def test_a_model_and_data_with_different_schemas_are_refused(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from train.labels import check_schema_matches

    files = {s: write_jsonl(tmp_path / f"{s}.jsonl", one_task_records(n, i))
             for i, (s, n) in enumerate([("train", 40), ("validation", 10), ("test", 10)])}
    train_with_schema(compose_cfg, tmp_path, tiny_model_dir, files, ONE_TASK, **{"trainer.num_train_epochs": 1})
    news = LabelSchema(THREE_TASKS[:2])
    with pytest.raises(ValueError, match="label schema"):
        check_schema_matches(tmp_path / "models/tiny-run", news, "data/corpus")
