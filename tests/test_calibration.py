"""Calibration: fitted on validation, folded exactly into the head, saved with thresholds tuned on
calibrated scores, and it lowers the calibration error it is meant to lower."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from train import calibration
from train.fit import train
from train.labels import LabelSchema
from train.metrics import calibration as ece_of

SCHEMA = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["a", "b"]},
                      {"name": "stance", "kind": "single_label", "labels": ["p", "n", "u"]}])


def overconfident_logits(n=600, seed=0):
    """Logits whose topic scores run too high (a pos_weight-like shift) and too sharp."""
    rng = np.random.default_rng(seed)
    topics = (rng.random((n, 2)) < 0.2).astype(int)
    stance = rng.integers(0, 3, n)
    gold = np.zeros((n, 5), dtype=int)
    gold[:, :2], gold[np.arange(n), 2 + stance] = topics, 1
    logits = np.zeros((n, 5))
    logits[:, :2] = 6 * (2 * topics - 1) + rng.normal(0, 5, (n, 2)) + 3
    logits[:, 2:] = 8 * np.eye(3)[stance] + rng.normal(0, 5, (n, 3))
    return logits, gold


def test_calibration_lowers_the_error_on_fresh_data_from_the_same_source():
    logits, gold = overconfident_logits(seed=0)
    fitted = calibration.fit(SCHEMA, logits, gold)
    test_logits, test_gold = overconfident_logits(seed=1)
    before = ece_of(SCHEMA, test_gold, SCHEMA.probabilities(test_logits))
    after = ece_of(SCHEMA, test_gold, SCHEMA.probabilities(calibration.apply(SCHEMA, fitted, test_logits)))
    for task in ("topics", "stance"):
        assert after[task]["ece"] < 0.5 * before[task]["ece"], (task, before[task]["ece"], after[task]["ece"])
    assert fitted["stance"]["temperature"] > 1  # the stance logits were too sharp


def test_baked_head_outputs_the_calibrated_logits_and_invert_recovers_the_raw_ones():
    head = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5))
    features = torch.randn(16, 4)
    raw = head(features).detach().numpy()
    fitted = {"topics": {"method": "platt", "scale": [0.5, 2.0], "bias": [-1.0, 0.25]},
              "stance": {"method": "temperature", "temperature": 1.7}}
    calibration.bake(head, SCHEMA, fitted)
    baked = head(features).detach().numpy()
    np.testing.assert_allclose(baked, calibration.apply(SCHEMA, fitted, raw), atol=1e-5)
    np.testing.assert_allclose(calibration.invert(SCHEMA, fitted, baked), raw, atol=1e-5)
    probs = SCHEMA.probabilities(baked)
    np.testing.assert_allclose(SCHEMA.probabilities(calibration.logits_from_probabilities(SCHEMA, probs)), probs,
                               atol=1e-6)


def test_training_folds_calibration_into_the_saved_model_and_tunes_thresholds_on_it(
        tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from train.fit import last_checkpoint

    metrics = train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 3, "trainer.save_total_limit": 1, "early_stopping_patience": 5})))
    out = tmp_path / "models/tiny-run"
    fitted = json.loads((out / "calibration.json").read_text())
    assert fitted["topics"]["method"] == "platt" and len(fitted["topics"]["scale"]) == 4
    assert fitted["stance"]["temperature"] > 0
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert set(thresholds["topics"]) == {"summitry", "sanctions", "russia_ties", "inter_korean"}
    for task in ("topics", "stance"):
        assert metrics[f"{task}_ece_after_calibration"] >= 0
        assert f"calibrated_{task}_macro_f1" in json.loads((out / "validation_metrics.json").read_text())
    # a temperature never changes the argmax: stance decisions after calibration are those of the raw head,
    # and thresholds tuned on the same validation split cannot do much worse than 0.5
    assert metrics["calibrated_stance_macro_f1"] == pytest.approx(metrics["stance_macro_f1"])
    assert metrics["calibrated_topics_macro_f1"] >= metrics["topics_macro_f1"] - 0.1
    # the kept checkpoint holds the raw head: the saved model's logits are its logits, calibrated
    raw_dir = last_checkpoint(tmp_path / "work/checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["seoul summit hopeful", "moscow sanctions alarming reported"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        raw = AutoModelForSequenceClassification.from_pretrained(raw_dir).eval()(**batch).logits.numpy()
        saved = AutoModelForSequenceClassification.from_pretrained(out).eval()(**batch).logits.numpy()
    schema = LabelSchema(json.loads((out / "config.json").read_text())["task_schema"])
    np.testing.assert_allclose(saved, calibration.apply(schema, fitted, raw), atol=1e-4)


def test_calibrate_false_leaves_the_head_raw(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 1, "calibrate": False})))
    assert not (tmp_path / "models/tiny-run/calibration.json").exists()


def test_calibration_pairs_each_logit_with_its_own_gold_when_the_trainer_reorders_batches():
    """The Trainer's length-grouped evaluation sampler permutes the validation split: gold must come
    from the prediction output, not from the dataset's order."""
    from types import SimpleNamespace

    from train.fit import calibrate

    schema = LabelSchema([{"name": "topics", "kind": "multi_label", "labels": ["a", "b"]},
                          {"name": "stance", "kind": "single_label", "labels": ["p", "n", "u"]}])
    logits, gold = overconfident_logits(n=300, seed=2)
    order = np.random.default_rng(0).permutation(len(gold))
    head = torch.nn.Linear(3, 5)
    trainer = SimpleNamespace(model=head, predict=lambda dataset: SimpleNamespace(
        predictions=logits[order], label_ids=gold[order]))
    metrics = {}
    calibrate(trainer, {"labels": gold.tolist()}, schema, metrics)
    from sklearn.metrics import f1_score
    raw_stance = f1_score(gold[:, 2:].argmax(1), logits[:, 2:].argmax(1), average="macro")
    assert metrics["calibrated_stance_macro_f1"] == pytest.approx(raw_stance)
    assert metrics["stance_ece_after_calibration"] < metrics["stance_ece_before_calibration"]
