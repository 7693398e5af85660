"""Shared fixtures: a tiny random BERT with a word-level tokenizer, a tiny separable corpus, and the
real Hydra config composed and shrunk to run in seconds (lightning-hydra-template style)."""

import json
import random
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

PROJECT = Path(__file__).resolve().parent.parent
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# Cue words make the tiny corpus separable: a tiny model can learn it in a few epochs.
TOPIC_CUES = {"summitry": "summit", "sanctions": "sanctions", "russia_ties": "moscow", "inter_korean": "seoul"}
STANCE_CUES = {"positive": "hopeful", "negative": "alarming", "neutral": "reported"}
FILLER = "the of a in on and week officials said today news paper article".split()
EXTRA_WORDS = "stadium parliament airport weekly urgent".split()  # cues of the other schemas' tests


def make_records(n, seed, prefix="r"):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topics = [t for t in TOPIC_CUES if rng.random() < 0.35]
        stance = list(STANCE_CUES)[i % 3]
        words = [TOPIC_CUES[t] for t in topics] + [STANCE_CUES[stance]] + rng.sample(FILLER, 5)
        rng.shuffle(words)
        out.append({"id": f"{prefix}-{i}", "text": " ".join(words), "lang": rng.choice(["en", "es", "ko"]),
                    "topics": topics, "stance": stance, "source": "test", "doc_id": f"{prefix}-doc-{i}"})
    return out


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with a word-level fast tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(set(
        list(TOPIC_CUES.values()) + list(STANCE_CUES.values()) + FILLER + EXTRA_WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                        model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    out = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def tiny_corpus(tmp_path) -> dict:
    files = {"train": write_jsonl(tmp_path / "data/train.jsonl", make_records(96, 1, "tr")),
             "validation": write_jsonl(tmp_path / "data/validation.jsonl", make_records(24, 2, "va")),
             "test": write_jsonl(tmp_path / "data/test.jsonl", make_records(24, 3, "te"))}
    return files


def tiny_overrides(tmp_path, model_dir, files, **extra) -> list[str]:
    """Overrides that shrink the real config to a seconds-long run writing only under tmp_path."""
    values = {
        "model.name_or_path": str(model_dir), "model.name": "tiny", "model.text_prefix": "''",
        "model.max_length": 32, "model.freeze_word_embeddings": False, "model.freeze_layers": 0,
        "data.files.train": str(files["train"]), "data.files.validation": str(files["validation"]),
        "data.files.test": str(files["test"]), "data.files.seeds": str(files["test"]),
        "trainer.num_train_epochs": 2, "trainer.per_device_train_batch_size": 16,
        "trainer.learning_rate": 5e-3, "trainer.warmup_steps": 0, "trainer.logging_steps": 1,
        "trainer.use_cpu": True, "trainer.report_to": "none", "paths.models_dir": str(tmp_path / "models"),
        "paths.work_dir": str(tmp_path / "work"), "run_name": "tiny-run", "export_onnx": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def compose_cfg():
    """compose_cfg(overrides) -> the real train.yaml composed with those overrides."""
    def _compose(overrides):
        with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)
    return _compose


@pytest.fixture(scope="session")
def news_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny model trained on the tiny corpus with the news schema and exported to ONNX, shared
    by the tests that only read it (copy it to change it)."""
    from train.fit import train

    tmp = tmp_path_factory.mktemp("news-model")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 24)])}
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=tiny_overrides(tmp, tiny_model_dir, files, **{"export_onnx": True}))
    train(cfg)
    return tmp / "models/tiny-run"


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    """A command's `main` (the function under @hydra.main) run in this process on the config its
    command line would compose: (exit code, stdout, stderr)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        cfg = compose(main.__module__.removeprefix("train."), overrides=argv)
    try:
        main.__wrapped__(cfg)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
