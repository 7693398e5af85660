"""Inference: API, command line and plain transformers agree; windows cover long text; articles
aggregate by the guide; bad input gets a message naming the record."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import PROJECT, tiny_overrides
from train.articles import aggregate, split_paragraphs
from train.fit import train
from train.inference import Classifier, ModelFolderError

TEXTS = ["seoul summit hopeful", "moscow sanctions alarming the week", "reported news paper article today",
         "summit moscow seoul hopeful officials said"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model_dir):
    from hydra import compose, initialize_config_dir
    from conftest import make_records, write_jsonl

    tmp = tmp_path_factory.mktemp("inference")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 24)])}
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=tiny_overrides(tmp, tiny_model_dir, files,
                                                        **{"trainer.num_train_epochs": 3, "export_onnx": True}))
    train(cfg)
    return tmp / "models/tiny-run"


def run_predict(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "train.predict", *args], cwd=PROJECT, input=stdin,
                          capture_output=True, timeout=300)


def test_api_cli_and_plain_pipeline_agree(model_dir, tmp_path):
    from transformers import pipeline

    clf = Classifier.from_pretrained(model_dir)
    assert clf.engine == "onnx"  # the training job exported onnx/, so the default path runs it
    ours = clf.predict(TEXTS)
    pipe = pipeline("text-classification", model=str(model_dir), top_k=None, function_to_apply="none")
    for text, pred in zip(TEXTS, pipe(TEXTS)):
        logits = {d["label"]: d["score"] for d in pred}
        topic = 1 / (1 + np.exp(-np.array([logits[t] for t in ["summitry", "sanctions", "russia_ties", "inter_korean"]])))
        stance = np.array([logits[s] for s in ["positive", "negative", "neutral"]])
        stance = np.exp(stance - stance.max()) / np.exp(stance - stance.max()).sum()
        mine = next(p for t, p in zip(TEXTS, ours) if t == text)
        np.testing.assert_allclose(list(mine["topics_scores"].values()), topic, atol=1e-5)
        np.testing.assert_allclose(list(mine["stance_scores"].values()), stance, atol=1e-5)

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    result = run_predict(f"model_dir={model_dir}", f"input={src}", "progress=false")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    cli = [json.loads(l) for l in result.stdout.decode().splitlines()]
    assert [r["id"] for r in cli] == [0, 1, 2, 3]  # other fields pass through, order kept
    for a, b in zip(cli, ours):
        a = a["prediction"]
        assert a["topics"] == b["topics"] and a["stance"] == b["stance"]
        np.testing.assert_allclose(list(a["stance_scores"].values()), list(b["stance_scores"].values()), atol=1e-5)


def test_a_20000_character_paragraph_is_windowed_not_truncated(model_dir):
    clf = Classifier.from_pretrained(model_dir)
    words = "summit seoul hopeful reported the of a in on and".split()
    long_text = " ".join(words[i % len(words)] for i in range(3600))[:20000]
    windows = clf.windows(long_text)
    body = clf.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(windows) > 1 and all(len(w) <= clf.window for w in windows)
    covered = set()
    room = clf.window - clf.tokenizer.num_special_tokens_to_add()
    for k, _ in enumerate(windows):  # every token of the text sits in some window
        start = k * (room - clf.overlap)
        covered.update(range(start, min(start + room, len(body))))
    assert covered == set(range(len(body)))
    pred = clf.predict([long_text])[0]
    assert pred["windows"] == len(windows)
    # a topic cue only at the very end is still seen (max over windows)
    tail_only = " ".join(["reported"] * 3000) + " moscow"
    short = clf.predict(["moscow"])[0]["topics_scores"]["russia_ties"]
    tail = clf.predict([tail_only])[0]["topics_scores"]["russia_ties"]
    assert tail >= min(short, 0.5) * 0.5


def test_article_aggregation_follows_the_guide():
    p = lambda text, topics, stance: {"text": text, "topics": topics, "stance": stance}
    headline = p("H" * 10, ["summitry"], "neutral")
    # sanctions holds 30/100 topical characters (kept), russia_ties 10/100 (dropped)
    article = [headline, p("a" * 60, ["inter_korean"], "neutral"), p("b" * 30, ["sanctions"], "negative"),
               p("c" * 10, ["russia_ties"], "positive"), p("d" * 40, [], "neutral")]
    got = aggregate(article)
    assert got["topics"] == ["summitry", "inter_korean", "sanctions"]
    assert got["stance"] == "neutral"  # 40 of 150 characters are non-neutral: under a third
    article[4] = p("d" * 40, [], "negative")  # now 80 of 150, negative has the most characters
    assert aggregate(article)["stance"] == "negative"
    assert aggregate([p("x", [], "neutral")]) == {"topics": [], "stance": "neutral"}


def test_article_stance_methods_weigh_the_headline_and_the_scores():
    def p(text, stance, scores=None):
        return {"text": text, "topics": [], "stance": stance,
                **({"stance_scores": scores} if scores else {})}
    # a failure story: a negative headline (20 chars), hopeful quotes (50), a negative paragraph (20)
    story = [p("H" * 20, "negative"), p("q" * 50, "positive"), p("n" * 20, "negative"), p("f" * 60, "neutral")]
    assert aggregate(story)["stance"] == "positive"  # 50 positive characters against 40 negative
    # the headline counted as a quarter of the article: 43 + 20 negative against 50 positive
    assert aggregate(story, stance_method="headline_weighted")["stance"] == "negative"
    # score-weighted: confident neutral paragraphs that lean negative add up
    leaning = {"positive": 0.05, "negative": 0.45, "neutral": 0.5}
    article = [p("h" * 10, "neutral", leaning), p("a" * 90, "neutral", leaning)]
    assert aggregate(article)["stance"] == "neutral"
    assert aggregate(article, stance_method="score_weighted")["stance"] == "negative"
    with pytest.raises(ValueError, match="stance_method"):
        aggregate(article, stance_method="vote")


def test_article_mode_splits_at_blank_lines_and_keeps_the_headline(model_dir, tmp_path):
    text = "Headline about the summit\n\nFirst paragraph seoul hopeful.\n \nSecond paragraph moscow.\n"
    assert split_paragraphs(text) == ["Headline about the summit", "First paragraph seoul hopeful.",
                                      "Second paragraph moscow."]
    clf = Classifier.from_pretrained(model_dir)
    art = clf.predict_article(text)
    assert art["headline"] == "Headline about the summit" and len(art["paragraphs"]) == 3
    assert art["topics"] == aggregate(art["paragraphs"])["topics"]
    result = run_predict(f"model_dir={model_dir}", "mode=article", "progress=false", stdin=text.encode())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = json.loads(result.stdout)["prediction"]
    assert out["topics"] == art["topics"] and len(out["paragraphs"]) == 3


@pytest.mark.parametrize("method", ["rule", "score_weighted", "headline_weighted"])
def test_article_stance_method_reaches_predict_article_and_the_command(model_dir, method):
    text = "Talks collapse in Hanoi\n\nThe summit ended early, officials said.\n\nBoth sides hope to meet again."
    clf = Classifier.from_pretrained(model_dir)
    art = clf.predict_article(text, stance_method=method)
    assert art["stance"] == aggregate(art["paragraphs"], stance_method=method)["stance"]
    result = run_predict(f"model_dir={model_dir}", "mode=article", f"article_stance={method}", "progress=false",
                         stdin=text.encode())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads(result.stdout)["prediction"]["stance"] == art["stance"]
    with pytest.raises(ValueError, match="stance_method"):
        clf.predict_article(text, stance_method="loudest")


def test_csv_in_and_out(model_dir, tmp_path):
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "body"])
        w.writerows([[1, TEXTS[0]], [2, TEXTS[1]]])
    out = tmp_path / "out.csv"
    result = run_predict(f"model_dir={model_dir}", f"input={src}", "column=body", f"output={out}", "progress=false")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["1", "2"] and "pred_stance:neutral" in rows[0]
    result = run_predict(f"model_dir={model_dir}", f"input={src}", "column=text", f"output={tmp_path / 'x.csv'}")
    assert result.returncode == 2 and b"text: no such column" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_bad_records_are_named_and_skipped_on_request(model_dir, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"text": "seoul summit"}\n{"text": "  "}\n{broken\n{"body": "x"}\n{"text": "\xff"}\n'
                    b'{"text": "moscow"}\n')
    out = tmp_path / "out.jsonl"
    result = run_predict(f"model_dir={model_dir}", f"input={src}", f"output={out}")
    assert result.returncode == 2 and f"{src}:2: text: empty".encode() in result.stderr
    assert not out.exists()  # nothing half-written
    result = run_predict(f"model_dir={model_dir}", f"input={src}", f"output={out}", "on_error=skip", "progress=false")
    assert result.returncode == 0
    err = result.stderr.decode()
    for message in [f"{src}:2: text: empty", f"{src}:3: line: invalid JSON", f"{src}:4: text: missing",
                    f"{src}:5: text: invalid UTF-8"]:
        assert message in err, err
    assert "2 paragraph(s) labelled, 4 skipped" in err
    assert len(out.read_text().splitlines()) == 2


def test_missing_or_broken_model_folders_are_named(model_dir, tmp_path):
    with pytest.raises(ModelFolderError, match="model folder not found"):
        Classifier.from_pretrained(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json: not valid JSON"):
        Classifier.from_pretrained(broken)
    result = run_predict(f"model_dir={tmp_path / 'nope'}", "input=seeds")
    assert result.returncode == 2 and b"model folder not found" in result.stderr


def test_the_onnx_export_gives_the_pytorch_scores_and_int8_stays_close(model_dir):
    report = json.loads((model_dir / "onnx/export.json").read_text())
    assert report["fusions"]["Attention"] == 2  # both layers' attention fused (the speed comes from it)
    long_text = " ".join(TEXTS * 6)  # several windows, one batch of mixed lengths
    exact = Classifier.from_pretrained(model_dir, engine="torch", window=16)
    fast = Classifier.from_pretrained(model_dir, window=16)
    assert (exact.engine, fast.engine) == ("torch", "onnx")
    np.testing.assert_allclose(fast.scores(TEXTS + [long_text])[0], exact.scores(TEXTS + [long_text])[0], atol=1e-5)
    int8 = Classifier.from_pretrained(model_dir, precision="int8", window=16)
    assert int8.engine == "onnx" and int8.max_batch == 1  # its activation scale is per call
    probs, windows = int8.scores(TEXTS + [long_text], batch_size=32)
    assert windows[-1] > 1 and np.abs(probs - exact.scores(TEXTS + [long_text])[0]).max() < 0.1
    # each text alone gives the same int8 scores as in a batch: no neighbour changes a paragraph's scale
    np.testing.assert_allclose(int8.scores(TEXTS[1:2])[0][0], probs[1], atol=1e-6)


def test_the_export_command_replaces_the_export_whole_or_not_at_all(model_dir, monkeypatch):
    import train.export as export

    before = (model_dir / "onnx/model.onnx").read_bytes()
    monkeypatch.setattr(export, "FP32_TOLERANCE", 0.0)  # no export can pass: it must leave the old one
    with pytest.raises(export.ExportError, match="model.onnx: logits differ from the PyTorch model"):
        export.export(model_dir)
    assert (model_dir / "onnx/model.onnx").read_bytes() == before
    assert sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".")) == []  # no temp folders left
    monkeypatch.undo()
    result = subprocess.run([sys.executable, "-m", "train.export", f"model_dir={model_dir}", "quantize=false"],
                            cwd=PROJECT, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"model.onnx" in result.stdout and not (model_dir / "onnx/model_quantized.onnx").exists()
    with pytest.raises(ModelFolderError, match="model_quantized.onnx: missing; write it with"):
        Classifier.from_pretrained(model_dir, engine="onnx", precision="int8")
    with pytest.raises(ValueError, match="the onnx engine has fp32 and int8"):
        Classifier.from_pretrained(model_dir, engine="onnx", precision="bf16")
    result = run_predict(f"model_dir={model_dir}", "engine=gpu", stdin=b"seoul")
    assert result.returncode == 2 and b"engine='gpu': expected auto, onnx or torch" in result.stderr
    result = subprocess.run([sys.executable, "-m", "train.export", f"model_dir={model_dir / 'nope'}"],
                            cwd=PROJECT, capture_output=True, timeout=300)
    assert result.returncode == 2 and b"model folder not found" in result.stderr
    test_split = model_dir.parent.parent / "data/test.jsonl"
    result = subprocess.run([sys.executable, "-m", "train.export", f"model_dir={model_dir}", f"compare_on={test_split}"],
                            cwd=PROJECT, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode()
    assert (model_dir / "onnx/model_quantized.onnx").is_file() and f"macro-F1 at 0.5 on {test_split}" in out
    assert re.search(r"stance +fp32 [01]\.\d{3} +int8 [01]\.\d{3} +change [+-]\d\.\d{3}", out), out
