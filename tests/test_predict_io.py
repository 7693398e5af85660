"""The prediction command's input and output: every input field passes through unchanged with the
model's output under its own key; CSV records of any size, with bad bytes or spread over several
lines, are named by their physical line; Ctrl-C and killed runs leave no temporary files."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import PROJECT, run_main
from train.predict import main

ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def predict(model, capsys, *overrides):
    return run_main(main, [f"model_dir={model}", "progress=false", *map(str, overrides)], capsys)


def test_input_fields_pass_through_unchanged_and_predictions_have_their_own_key(news_model_dir, tmp_path, capsys):
    records = [{"id": 7, "text": "seoul summit hopeful", "topics": ["sanctions"], "stance": "negative",
                "meta": {"source": "x", "tags": [1, 2]}},
               {"text": "moscow alarming", "windows": "kept", "topics_scores": "also kept"}]
    src = tmp_path / "gold.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, err = predict(news_model_dir, capsys, f"input={src}")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    for record, row in zip(records, rows):
        prediction = row.pop("prediction")
        assert row == record  # the gold topics/stance and every other field, as they came
        assert set(prediction) == {"topics", "topics_scores", "stance", "stance_scores", "windows"}

    src.write_text(json.dumps({"text": "seoul", "prediction": "mine"}) + "\n" + json.dumps({"text": "moscow"}) + "\n")
    code, out, err = predict(news_model_dir, capsys, f"input={src}", "on_error=skip")
    assert code == 0 and f"{src}:1: prediction: the input has this field" in err
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["moscow"]

    article = tmp_path / "a.txt"
    article.write_text("Headline summit\n\nseoul hopeful\n\nmoscow sanctions\n")
    code, out, err = predict(news_model_dir, capsys, f"input={article}", "mode=article")
    row = json.loads(out)
    assert code == 0 and set(row) == {"file", "prediction"} and row["file"] == str(article)
    assert {"topics", "stance", "headline", "paragraphs"} <= set(row["prediction"])


def test_csv_columns_pass_through_and_predictions_are_pred_columns(news_model_dir, tmp_path, capsys):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    with src.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "body", "topics", "stance"], [1, "seoul summit", "sanctions", "positive"],
                                 [2, "moscow alarming", "", "negative"]])
    code, _, err = predict(news_model_dir, capsys, f"input={src}", "column=body", f"output={out}")
    assert code == 0, err
    rows = list(csv.DictReader(out.open(newline="")))
    assert list(rows[0])[:4] == ["id", "body", "topics", "stance"]
    assert [(r["id"], r["body"], r["topics"], r["stance"]) for r in rows] == [
        ("1", "seoul summit", "sanctions", "positive"), ("2", "moscow alarming", "", "negative")]
    assert {"pred_topics", "pred_topics:summitry", "pred_stance", "pred_stance:neutral", "pred_windows"} <= set(rows[0])

    with src.open("w", newline="") as f:
        csv.writer(f).writerows([["body", "pred_topics"], ["seoul", "x"]])
    code, _, err = predict(news_model_dir, capsys, f"input={src}", "column=body", f"output={out}")
    assert code == 2 and f"error: {src}:1: header: columns starting with 'pred_'" in err


def write_csv_bytes(path, rows: list[bytes]):
    path.write_bytes(b"".join(rows))
    return path


def test_csv_records_are_named_by_the_physical_line_they_start_on(news_model_dir, tmp_path, capsys):
    huge = "seoul summit hopeful " * 10_000  # 210,000 characters: over csv's default 131,072 limit
    src = write_csv_bytes(tmp_path / "in.csv", [
        b"id,body\n",                                   # line 1
        b'1,"first\nsecond line\nthird"\n',            # lines 2-4: one record over three lines
        b'2,"  \n   "\n',                               # lines 5-6: an empty text, starting on line 5
        b"3,moscow \xff\xfe sanctions\n",               # line 7: invalid UTF-8 at byte 9 of the line
        f'4,"{huge}"\n'.encode(),                       # line 8
        b"5,seoul\n",                                   # line 9
    ])
    out = tmp_path / "out.jsonl"
    code, _, err = predict(news_model_dir, capsys, f"input={src}", "column=body", f"output={out}")
    assert code == 2 and err.startswith(f"error: {src}:5: body: empty"), err
    assert not out.exists()
    code, _, err = predict(news_model_dir, capsys, f"input={src}", "column=body", f"output={out}", "on_error=skip")
    assert code == 0, err
    assert f"{src}:5: body: empty" in err and f"{src}:7: line: invalid UTF-8 at byte 9 of the line" in err
    assert "3 paragraph(s) labelled, 2 skipped" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "4", "5"] and len(rows[1]["body"]) == len(huge)
    assert rows[1]["prediction"]["windows"] > 1


def test_invalid_utf8_in_a_text_file_is_named_by_line(news_model_dir, tmp_path, capsys):
    src = tmp_path / "article.txt"
    src.write_bytes(b"Headline\n\nfirst paragraph\nsecond \xc3( line\n")
    code, _, err = predict(news_model_dir, capsys, f"input={src}", "mode=article")
    assert code == 2 and err.startswith(f"error: {src}:4: text: invalid UTF-8 at byte 7 of the line"), err


def test_ctrl_c_prints_one_line_removes_the_temporary_file_and_exits_130(news_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"seoul summit {i}"}) + "\n" for i in range(50_000)))
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "train.predict", f"model_dir={news_model_dir}", f"input={src}",
                             f"output={out}", "chunk_size=8", "progress=false"], cwd=PROJECT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell without job control (CI, `cmd &`) starts us with SIGINT ignored and the
                            # child would inherit that; a user's terminal delivers Ctrl-C with the default action
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.jsonl.tmp*")):  # labelling has started
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err == "interrupted\n", err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(news_model_dir, tmp_path, capsys):
    from train.files import pid_alive

    dead = next(pid for pid in range(4_000_000, 4_100_000) if not pid_alive(pid))
    running = subprocess.Popen(["sleep", "60"])  # another run still writing the same output
    stale, live = tmp_path / f".out.jsonl.tmp{dead}", tmp_path / f".out.jsonl.tmp{running.pid}"
    other = tmp_path / f".other.jsonl.tmp{dead}"  # another output's: not this run's business
    for path in (stale, live, other):
        path.write_text("half a file")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "seoul"}) + "\n")
    try:
        code, _, err = predict(news_model_dir, capsys, f"input={src}", f"output={tmp_path / 'out.jsonl'}")
    finally:
        running.kill()
        running.wait()
    assert code == 0, err
    assert not stale.exists() and live.exists() and other.exists()  # a running process's file is left alone
    assert (tmp_path / "out.jsonl").is_file()


def test_a_folder_input_skips_a_sub_folder_named_like_a_text_file(news_model_dir, tmp_path, capsys):
    (tmp_path / "articles/b.txt").mkdir(parents=True)
    (tmp_path / "articles/a.txt").write_text("Headline\n\nseoul summit\n")
    code, out, err = predict(news_model_dir, capsys, f"input={tmp_path / 'articles'}", "mode=article")
    assert code == 0, err
    assert [json.loads(line)["file"] for line in out.splitlines()] == [str(tmp_path / "articles/a.txt")]


@pytest.mark.parametrize("mode", ["paragraph", "article"])
def test_the_progress_bar_counts_windows(news_model_dir, tmp_path, capsys, mode):
    src = tmp_path / "in.txt"
    src.write_text("Headline\n\n" + "seoul summit hopeful " * 400)  # 1200 words: several 64-token windows
    code, _, err = run_main(main, [f"model_dir={news_model_dir}", f"input={src}", f"mode={mode}",
                                   "progress=true", "batch_size=2"], capsys)
    assert code == 0, err
    windows = 1 + len(range(0, 1200 - 16, 62 - 16))  # the headline's, then the long paragraph's
    counts = [int(n) for n in re.findall(r"labelling: (\d+)window", err)]
    assert counts[-1] == windows and counts == sorted(counts), err  # it advanced to every window
