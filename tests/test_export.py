"""The ONNX export of the architectures the configs offer besides BERT (model=xlmr_base,
mdeberta_base), on tiny random local copies: exported, checked, and scored like PyTorch."""

import json

import numpy as np
import pytest

from train.export import export
from train.inference import Classifier

SCHEMA = [{"name": "topics", "kind": "multi_label", "labels": ["summitry", "sanctions"]},
          {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]}]
TEXTS = ["seoul summit hopeful", "moscow sanctions alarming the week officials said today " * 3]


@pytest.mark.parametrize("arch", ["xlm-roberta", "deberta-v2"])
def test_other_architectures_export_and_score_like_pytorch(arch, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = AutoConfig.for_model(arch, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, pad_token_id=1, num_labels=5,
                                  initializer_range=0.5,  # large random weights: texts score apart
                                  max_position_embeddings=66 if arch == "xlm-roberta" else 64,
                                  id2label={i: l for i, l in enumerate(["summitry", "sanctions", "positive",
                                                                         "negative", "neutral"])})
    config.task_schema, config.text_prefix = SCHEMA, ""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    report = export(tmp_path)
    assert report["model.onnx"]["max_abs_logit_diff"] < 1e-3
    assert json.loads((tmp_path / "onnx/export.json").read_text())["fusions"] == report["fusions"]
    if arch == "xlm-roberta":
        assert report["fusions"]["Attention"] == 2  # ONNX Runtime fuses RoBERTa attention like BERT's
    fast, exact = (Classifier.from_pretrained(tmp_path, engine=e, window=16) for e in ("onnx", "torch"))
    np.testing.assert_allclose(fast.scores(TEXTS)[0], exact.scores(TEXTS)[0], atol=1e-5)
    assert np.ptp(exact.scores(TEXTS)[0], axis=0).max() > 1e-3  # the texts do score differently
