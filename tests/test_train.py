"""The training job end to end on a tiny model: folder contents, plain-transformers loading,
learning, sweeps through the real command line, and bad input stopping the run cleanly."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train.data import DataError, load_split
from train.fit import MultiTaskLoss, train
from train.labels import LabelSchema


def run_cli(args, tmp_path):
    """The real command line; Hydra's run folder goes under tmp_path too."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "train", *args, f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)


def test_training_writes_a_complete_model_folder_and_points_latest_at_it(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus))
    metrics = train(cfg)
    out = tmp_path / "models/tiny-run"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "config.yaml", "label_schema.json", "validation_metrics.json"):
        assert (out / name).is_file(), name
    assert not (out / "training_args.bin").exists()  # no pickles in a model folder
    assert (tmp_path / "models/latest").resolve() == out.resolve()
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == ["summitry", "sanctions", "russia_ties", "inter_korean",
                                                 "positive", "negative", "neutral"]
    assert config["problem_type"] == "multi_label_classification"
    assert config["task_schema"][1] == {"name": "stance", "kind": "single_label",
                                        "labels": ["positive", "negative", "neutral"]}
    saved = json.loads((out / "validation_metrics.json").read_text())
    assert saved["macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert "learning_rate: 0.005" in (out / "config.yaml").read_text()


def test_saved_model_loads_with_plain_transformers_and_pipeline(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from transformers import AutoModelForSequenceClassification, pipeline

    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.num_train_epochs": 1})))
    out = str(tmp_path / "models/latest")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label[3] == "inter_korean" and model.config.num_labels == 7
    scores = pipeline("text-classification", model=out, top_k=None)(["seoul summit hopeful"])[0]
    assert {s["label"] for s in scores} == {"summitry", "sanctions", "russia_ties", "inter_korean",
                                            "positive", "negative", "neutral"}


def loss_on(model_dir, schema, records, train_records):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=schema.num_outputs).eval()
    batch = tok([r["text"] for r in records], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch)
    labels = torch.tensor([schema.encode(r) for r in records])
    return float(MultiTaskLoss(schema, train_records, balance_classes=True)(outputs, labels))


def test_loss_falls_on_a_small_separable_set(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 25, "trainer.per_device_train_batch_size": 8, "early_stopping_patience": 25,
        "calibrate": False}))  # calibration is fitted on these validation records: it would help the loss here
    schema = LabelSchema(cfg.data.schema)
    train_records = load_split(tiny_corpus["train"], schema)
    val_records = load_split(tiny_corpus["validation"], schema)
    before = loss_on(tiny_model_dir, schema, val_records, train_records)
    metrics = train(cfg)
    after = loss_on(tmp_path / "models/tiny-run", schema, val_records, train_records)
    assert after < 0.6 * before, (before, after)
    assert metrics["macro_f1"] > 0.6


def test_same_seed_gives_the_same_metrics(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    first = train(compose_cfg(tiny_overrides(tmp_path / "a", tiny_model_dir, tiny_corpus)))
    second = train(compose_cfg(tiny_overrides(tmp_path / "b", tiny_model_dir, tiny_corpus)))
    assert round(first["macro_f1"], 4) == round(second["macro_f1"], 4)
    assert round(first["loss"], 4) == round(second["loss"], 4)


def test_command_line_sweep_writes_one_model_per_run(tmp_path, tiny_model_dir, tiny_corpus):
    overrides = tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.num_train_epochs": 1})
    result = run_cli(["-m", "seed=1,2", *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "models").iterdir() if not p.name.startswith("."))
    assert runs == ["latest", "tiny-run_0", "tiny-run_1"]
    assert json.loads((tmp_path / "models/tiny-run_1/config.json").read_text())["id2label"]["0"] == "summitry"


@pytest.mark.parametrize("line, field, message", [
    ('{"id": "x1", "text": "a", "lang": "en", "topics": ["nukes"], "stance": "neutral"}', "topics", "unknown label"),
    ('{"id": "x1", "text": "   ", "lang": "en", "topics": [], "stance": "neutral"}', "text", "empty or whitespace-only"),
    ('{"id": "x1", "text": "a", "lang": "en", "topics": []}', "stance", "missing"),
    ('{"id": "x1", "text": "a", "lang": "en", "topics": [], "stance": "neutral"', "line", "invalid JSON"),
    ('{"id": "x1", "text": "a", "lang": "English", "topics": [], "stance": "neutral"}', "lang", "ISO 639"),
])
def test_bad_training_data_stops_the_run_naming_file_line_and_field(tmp_path, tiny_model_dir, tiny_corpus,
                                                                     line, field, message):
    bad = write_jsonl(tmp_path / "data/bad.jsonl", make_records(5, 9, "b"))
    bad.write_text(bad.read_text() + line + "\n")
    overrides = tiny_overrides(tmp_path, tiny_model_dir, dict(tiny_corpus, train=bad))
    result = run_cli(overrides, tmp_path)
    assert result.returncode == 2
    assert f"{bad}:6: {field}: " in result.stderr and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "models").exists()  # nothing written, `latest` untouched
    assert not (tmp_path / "work").exists()


def test_missing_data_file_and_config_typo_give_clear_errors(tmp_path, tiny_model_dir, tiny_corpus):
    missing = tmp_path / "data/nope.jsonl"
    result = run_cli(tiny_overrides(tmp_path, tiny_model_dir, dict(tiny_corpus, validation=missing)), tmp_path)
    assert result.returncode == 2 and f"{missing}:0: file: not found" in result.stderr
    result = run_cli([*tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus), "trainer.learnig_rate=1e-4"], tmp_path)
    assert result.returncode != 0 and "learnig_rate" in result.stderr
    result = run_cli([*tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus), "model=no_such_model"], tmp_path)
    assert result.returncode != 0 and "no_such_model" in result.stderr
    assert not (tmp_path / "models").exists()


def test_a_failed_save_leaves_no_folder_and_keeps_latest(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg, monkeypatch):
    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.num_train_epochs": 1})))
    import train.fit as fit

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(fit.LabelSchema, "from_model_config", broken)
    with pytest.raises(OSError):
        train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus,
                                         **{"trainer.num_train_epochs": 1, "run_name": "second"})))
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert names == ["latest", "tiny-run"]
    assert os.readlink(tmp_path / "models/latest") == "tiny-run"


def test_a_failed_onnx_export_keeps_the_model_without_onnx(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg,
                                                          monkeypatch, caplog):
    import train.export as exporter

    def broken(*args, **kwargs):
        raise exporter.ExportError("unsupported operator")
    monkeypatch.setattr(exporter, "export", broken)
    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus,
                                     **{"trainer.num_train_epochs": 1, "export_onnx": True})))
    assert (tmp_path / "models/tiny-run/model.safetensors").is_file()
    assert not (tmp_path / "models/tiny-run/onnx").exists()
    assert "ONNX export failed (ExportError: unsupported operator)" in caplog.text


def test_class_weights_come_from_the_training_split():
    schema = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["a", "b"]},
                          {"name": "stance", "kind": "single_label", "labels": ["x", "y"]}])
    records = [{"topics": ["a"], "stance": "x"}] * 3 + [{"topics": [], "stance": "y"}]
    loss = MultiTaskLoss(schema, records, balance_classes=True)
    np.testing.assert_allclose(loss.weights["topics"].numpy(), [1 / 3, 4.0])  # neg/pos; b never positive -> 4/1
    np.testing.assert_allclose(loss.weights["stance"].numpy(), [4 / 6, 4 / 2])


def test_logit_adjustment_offsets_are_the_training_log_priors():
    schema = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["a", "b"]},
                          {"name": "stance", "kind": "single_label", "labels": ["x", "y"]}])
    records = [{"topics": ["a"], "stance": "x"}] * 3 + [{"topics": [], "stance": "y"}]
    loss = MultiTaskLoss(schema, records, logit_adjustment=1.0)
    assert loss.weights["topics"] is None and loss.weights["stance"] is None
    np.testing.assert_allclose(loss.offsets["topics"].numpy(), [np.log(3), np.log(1 / 4 / (3 / 4))], rtol=1e-6)
    np.testing.assert_allclose(loss.offsets["stance"].numpy(), np.log([3 / 4, 1 / 4]), rtol=1e-6)


def test_headline_context_trains_on_text_pairs_where_records_have_a_headline(tmp_path, tiny_model_dir, compose_cfg):
    from transformers import AutoTokenizer

    from train.fit import encode

    records = make_records(4, 5, "h")
    records[0]["headline"] = "summit hopeful"
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, {"train": "x", "validation": "x", "test": "x"},
                                     **{"model.context": "headline"}))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    schema = LabelSchema(cfg.data.schema)
    encoded = encode(records, schema, tokenizer, cfg.model, "train")
    assert encoded["input_ids"][0] == tokenizer("summit hopeful", records[0]["text"])["input_ids"]
    assert encoded["input_ids"][1] == tokenizer(records[1]["text"])["input_ids"]  # no headline: the text alone
    plain = encode(records, schema, tokenizer, compose_cfg(tiny_overrides(
        tmp_path, tiny_model_dir, {"train": "x", "validation": "x", "test": "x"})).model, "train")
    assert plain["input_ids"][0] == tokenizer(records[0]["text"])["input_ids"]


def test_checkpoint_averaging_keeps_the_mean_of_the_best_epochs(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from safetensors.torch import load_file

    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 3, "trainer.save_total_limit": "null", "early_stopping_patience": 5,
        "average_checkpoints": 2})))
    state = json.loads(max((tmp_path / "work/checkpoints").glob("checkpoint-*/trainer_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    scores = {e["step"]: e["eval_macro_f1"] for e in state["log_history"] if "eval_macro_f1" in e}
    best = sorted(scores, key=scores.get, reverse=True)[:2]
    name = "bert.encoder.layer.0.attention.self.query.weight"  # not the head: calibration rescales that
    expected = torch.stack([load_file(str(tmp_path / f"work/checkpoints/checkpoint-{s}/model.safetensors"))[name]
                            for s in best]).mean(0)
    saved = load_file(str(tmp_path / "models/tiny-run/model.safetensors"))[name]
    torch.testing.assert_close(saved, expected)


def test_freeze_layers_trains_only_the_upper_layers_and_the_head(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from safetensors.torch import load_file

    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 1, "model.freeze_layers": 1, "calibrate": False})))
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(tmp_path / "models/tiny-run/model.safetensors"))
    def weight(state, name):  # a base-model checkpoint has no `bert.` prefix
        return state.get(name, state.get(name.removeprefix("bert.")))
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight"):
        torch.testing.assert_close(weight(after, name), weight(before, name))
    assert not torch.equal(weight(after, "bert.encoder.layer.1.output.dense.weight"),
                           weight(before, "bert.encoder.layer.1.output.dense.weight"))


def test_a_headline_context_model_reads_articles_as_it_was_trained(tmp_path, tiny_model_dir, compose_cfg):
    """Classifier's windows for (headline, paragraph) are the training encoding's ids, and
    predict_article gives each body paragraph its headline."""
    from transformers import AutoTokenizer

    from train.fit import encode
    from train.inference import Classifier

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, {"train": "x", "validation": "x", "test": "x"},
                                     **{"model.context": "headline", "model.max_length": 64}))
    schema = LabelSchema(cfg.data.schema)
    records = make_records(3, 7, "c")
    for r in records:
        r["headline"] = "summit alarming news"
    trained_on = encode(records, schema, tokenizer, cfg.model, "train")["input_ids"]
    seen = []

    def forward(ids, mask):
        seen.extend(row[m.astype(bool)].tolist() for row, m in zip(ids, mask))
        return np.zeros((len(ids), schema.num_outputs), dtype=np.float32)

    clf = Classifier(forward, tokenizer, schema, {}, window=64, context="headline")
    assert [clf.windows(r["text"], r["headline"])[0] for r in records] == trained_on
    plain = Classifier(forward, tokenizer, schema, {}, window=64)  # a paragraph-only model ignores contexts
    assert plain.windows(records[0]["text"], "summit alarming news") == [tokenizer(records[0]["text"])["input_ids"]]
    clf.predict_article("summit alarming news\n\n" + records[0]["text"] + "\n\n" + records[1]["text"])
    assert sorted(seen) == sorted([tokenizer("summit alarming news")["input_ids"], *trained_on[:2]])


def test_the_default_recipe_row_is_the_shipped_default(compose_cfg):
    """The ablation's `default` row must describe what `python -m train` runs."""
    from omegaconf import OmegaConf

    plain = compose_cfg(["run_name=x"])
    row = compose_cfg(["run_name=x", "experiment=recipe/default"])
    assert OmegaConf.to_yaml(plain) == OmegaConf.to_yaml(row)
    assert compose_cfg(["experiment=gpu"]).model.freeze_layers == 0  # a GPU trains every layer
