"""A very long paragraph: its cost grows linearly with its length, progress is reported per batch of
windows while it is scored, and no misleading warning is printed (the windows handle its length)."""

import json
import os
import subprocess
import sys
import time

from conftest import PROJECT
from train.inference import Classifier

WORDS = "seoul summit hopeful reported moscow sanctions alarming the of a in on and week".split()


def paragraph(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


def test_progress_is_reported_after_every_batch_of_windows_of_one_paragraph(news_model_dir):
    clf = Classifier.from_pretrained(news_model_dir)
    text = paragraph(20_000)
    windows = len(clf.windows(text))
    seen = []
    probs, counts = clf.scores([text], batch_size=4, on_batch=seen.append)
    assert counts == [windows] and windows > 400
    assert len(seen) == -(-windows // 4) and sum(seen) == windows  # one call per forward pass, not one at the end


def test_the_time_to_score_a_paragraph_grows_linearly_with_its_length(news_model_dir):
    clf = Classifier.from_pretrained(news_model_dir, threads=1)

    def cpu_seconds(words):  # process CPU time: steadier than wall time on a shared machine
        text = paragraph(words)
        start = time.process_time()
        clf.scores([text], batch_size=8)
        return time.process_time() - start
    cpu_seconds(2_000)  # warm-up
    small, large = cpu_seconds(25_000), cpu_seconds(200_000)
    assert large / small < 16, (small, large)  # 8x the text: linear gives ~8, quadratic ~64


def test_a_long_paragraph_prints_no_misleading_warning(news_model_dir, tmp_path):
    src = tmp_path / "long.jsonl"
    src.write_text(json.dumps({"text": paragraph(5_000)}) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for engine in ("torch", "onnx"):
        result = subprocess.run([sys.executable, "-m", "train.predict", f"model_dir={news_model_dir}", f"input={src}",
                                 f"engine={engine}", "progress=false"], cwd=PROJECT, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["prediction"]["windows"] > 1
        # the tokenizer's "longer than the specified maximum ... indexing errors", transformers'
        # weight-loading bar and LOAD REPORT: none applies, and the last two draw ANSI codes
        for noise in ("Token indices sequence length", "indexing errors", "Loading weights", "LOAD REPORT", "\x1b["):
            assert noise not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == ["1 paragraph(s) labelled, 0 skipped"], result.stderr
