"""The model card: every model folder gets a Hugging Face README.md whose metadata parses, whose
loading snippets run, and whose metrics section (only) the evaluation job rewrites."""

import json
import logging
import re

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train import model_card
from train.evaluate import evaluate
from train.fit import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("card")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 30)])}
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        metrics = train(compose("train", overrides=tiny_overrides(tmp, tiny_model_dir, files)))
    return {"tmp": tmp, "files": files, "folder": tmp / "models/tiny-run", "metrics": metrics}


def split_card(text):
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def python_blocks(body):
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_training_writes_a_hugging_face_card(trained):
    meta, body = split_card((trained["folder"] / "README.md").read_text())
    assert meta["language"] == ["en", "ko", "es"]  # the training split's languages, most frequent first
    assert meta["license"] == "other" and meta["license_name"] == "mixed-training-data"
    assert {"text-classification", "stance-detection"} <= set(meta["tags"])
    assert meta["datasets"] == ["peninsula-news"] and meta["metrics"] == ["f1", "accuracy"]
    assert meta["pipeline_tag"] == "text-classification" and "base_model" not in meta  # a local folder has no hub id
    values = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values["topics macro-F1 (validation, best epoch, 0.5)"] == pytest.approx(
        trained["metrics"]["topics_macro_f1"], abs=1e-4)
    for heading in ("## Labels", "## How to use", "## Training", "## Evaluation", "## Intended use",
                    "## Limitations", "## Licence"):
        assert heading in body, heading
    assert "| stance | single-label (softmax) | `negative` | presents them as failed" in body
    section = body.split(model_card.METRICS_START)[1].split(model_card.METRICS_END)[0]
    assert "Measured on the validation split" in section and "24 paragraphs" in section
    languages = {json.loads(line)["lang"] for line in trained["files"]["validation"].read_text().splitlines()}
    for lang in languages:
        assert re.search(rf"^\| {lang} \| \d+ \|", section, flags=re.M), lang
    assert re.search(r"^\| stance \| \d\.\d{3} \|$", section, flags=re.M)  # expected calibration error


def test_the_cards_loading_snippets_run(trained):
    _, body = split_card((trained["folder"] / "README.md").read_text())
    toolkit, plain = python_blocks(body)
    for code in (toolkit, plain):
        scope = {}
        exec(code.replace("path/to/this/folder", str(trained["folder"])), scope)
    assert set(scope["topics"]) == {"summitry", "sanctions", "russia_ties", "inter_korean"}
    assert sum(scope["stance"].values()) == pytest.approx(1.0)


def test_evaluation_rewrites_only_the_metrics_section(trained, tmp_path):
    card = trained["folder"] / "README.md"
    before = card.read_text()
    files = trained["files"]
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"models=['{trained['folder']}']", f"out_dir={tmp_path / 'report'}",
                                             "baselines=false", "bootstrap.resamples=20", "progress=false",
                                             *[f"data.files.{s}={p}" for s, p in files.items()],
                                             f"data.files.seeds={files['test']}"])
    evaluate(cfg)
    after = card.read_text()
    outside = lambda text: re.sub(r"<!-- metrics:start -->.*<!-- metrics:end -->", "", text, flags=re.S)
    assert outside(after) == outside(before) and after != before
    section = after.split(model_card.METRICS_START)[1]
    assert "Measured on the `test` split" in section and "30 paragraphs" in section
    assert f"full report: `{tmp_path / 'report'}`" in section
    assert "Thresholds: thresholds.json (tuned earlier)." in section  # training tuned them on calibrated validation scores
    assert re.search(r"\| topics \| tuned thresholds \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", section)


def test_a_folder_without_a_card_gets_one_when_evaluated(trained, tmp_path):
    import shutil

    folder = tmp_path / "old-model"
    shutil.copytree(trained["folder"], folder)
    (folder / "README.md").unlink()
    files = trained["files"]
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"models=['{folder}']", f"out_dir={tmp_path / 'report'}", "split=validation",
                                             "baselines=false", "bootstrap.resamples=0", "progress=false",
                                             *[f"data.files.{s}={p}" for s, p in files.items()],
                                             f"data.files.seeds={files['test']}"])
    evaluate(cfg)
    meta, body = split_card((folder / "README.md").read_text())
    assert meta["license"] == "other" and "Measured on the `validation` split" in body


def test_a_card_that_cannot_be_written_does_not_cost_the_model(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg,
                                                               monkeypatch, caplog):
    def broken(*args):
        raise OSError("disk full")
    monkeypatch.setattr(model_card, "_write", broken)
    with caplog.at_level(logging.WARNING):
        train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.num_train_epochs": 1})))
    assert (tmp_path / "models/tiny-run/model.safetensors").is_file()
    assert not (tmp_path / "models/tiny-run/README.md").exists()
    assert "model card not written (OSError: disk full)" in caplog.text


def test_base_model_ids():
    assert model_card.base_model("embedded:e5-small") == "intfloat/multilingual-e5-small"
    assert model_card.base_model("FacebookAI/xlm-roberta-base") == "FacebookAI/xlm-roberta-base"
    assert model_card.base_model(str(PROJECT / "models")) is None
