"""Reliability: a run killed mid-epoch resumes to the same result; model folders hold no pickles and
load from safetensors only; broken weights, oversized records, JSON that is not text and a
checkpoint of another label schema stop with one message naming the file (and record), a non-zero
exit, and nothing half-written."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import PROJECT, make_records, tiny_overrides, write_jsonl
from train.data import DataError, read_records
from train.fit import last_checkpoint, train
from train.inference import Classifier, ModelFolderError
from train.labels import LabelSchema

NEWS_SCHEMA = [{"name": "topics", "kind": "multi_label", "labels": ["summitry", "sanctions", "russia_ties", "inter_korean"]},
               {"name": "stance", "kind": "single_label", "labels": ["positive", "negative", "neutral"]}]
# One torch thread: a tiny model gains nothing from more, and on a busy machine spinning OpenMP
# threads make it up to 30x slower.
ENV = dict(os.environ, HYDRA_FULL_ERROR="0", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")

# Loaded at start-up by the killed run only (PYTHONPATH): each training step sleeps, so the kill
# lands inside epoch 2 rather than racing a tiny model through it. Sleeping consumes no randomness.
SLOW_STEPS = '''
import os, time
import transformers
_step = transformers.Trainer.training_step
def training_step(self, *args, **kwargs):
    time.sleep(float(os.environ["PENINSULA_TEST_STEP_DELAY"]))
    return _step(self, *args, **kwargs)
transformers.Trainer.training_step = training_step
'''


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(tmp, overrides, *extra):
    """The real command line with an explicit Hydra run folder under `tmp`."""
    return [sys.executable, "-m", "train", *overrides, f"hydra.run.dir={tmp / 'hydra'}", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """One tiny 2-epoch run (model folder + checkpoints) shared by the tests that only read it."""
    from hydra import compose, initialize_config_dir

    tmp = tmp_path_factory.mktemp("reliability")
    files = {s: write_jsonl(tmp / f"data/{s}.jsonl", make_records(n, i, s[:2]))
             for i, (s, n) in enumerate([("train", 96), ("validation", 24), ("test", 24)])}
    overrides = tiny_overrides(tmp, tiny_model_dir, files)
    with initialize_config_dir(config_dir=str(PROJECT / "configs"), version_base="1.3"):
        train(compose("train", overrides=overrides))
    return {"tmp": tmp, "files": files, "model": tmp / "models/tiny-run", "work": tmp / "work"}


# -- 1. crash and resume -------------------------------------------------------------------------

def eval_history(work_dir: Path) -> list[tuple]:
    """(epoch, eval loss, macro-F1) per epoch and (step, training loss) per step, from the newest checkpoint."""
    state = json.loads((Path(last_checkpoint(work_dir / "checkpoints")) / "trainer_state.json").read_text())
    return [(h["epoch"], round(h["eval_loss"], 4), round(h["eval_macro_f1"], 4)) if "eval_loss" in h
            else (h["step"], round(h["loss"], 4)) for h in state["log_history"] if "eval_loss" in h or "loss" in h]


def test_a_run_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path, tiny_model_dir, tiny_corpus):
    settings = {"trainer.num_train_epochs": 4, "early_stopping_patience": 4}  # 6 steps per epoch
    ref, run = tmp_path / "ref", tmp_path / "crash"
    command = cli(run, tiny_overrides(run, tiny_model_dir, tiny_corpus, **settings))
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow/sitecustomize.py").write_text(SLOW_STEPS)
    slow = dict(ENV, PYTHONPATH=str(tmp_path / "slow"), PENINSULA_TEST_STEP_DELAY="0.25")
    log, ref_log = tmp_path / "crash.log", tmp_path / "ref.log"
    with log.open("w") as out, ref_log.open("w") as ref_out:
        # the uninterrupted run goes alongside the one to be killed (which mostly sleeps)
        reference = subprocess.Popen(cli(ref, tiny_overrides(ref, tiny_model_dir, tiny_corpus, **settings)),
                                     cwd=PROJECT, env=ENV, stdout=ref_out, stderr=subprocess.STDOUT)
        proc = subprocess.Popen(command, cwd=PROJECT, env=slow, stdout=out, stderr=subprocess.STDOUT)
        try:
            first_epoch = run / "work/checkpoints/checkpoint-6/trainer_state.json"  # written last
            deadline = time.time() + 120
            # kill once a step of epoch 2 is logged (logging_steps=1): mid-epoch, checkpoint 1 complete
            while not (first_epoch.is_file() and re.search(r"'epoch': '1\.\d+'", log.read_text())):
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
            assert reference.wait(timeout=300) == 0, ref_log.read_text()[-3000:]
        finally:
            for p in (proc, reference):
                if p.poll() is None:
                    p.kill()
    assert sorted(p.name for p in (run / "work/checkpoints").iterdir()) == ["checkpoint-6"]
    assert not (run / "models").exists()

    resumed = subprocess.run([*command, "resume=true"], cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr and "checkpoint-6" in resumed.stdout + resumed.stderr
    expected = json.loads((ref / "models/tiny-run/validation_metrics.json").read_text())
    got = json.loads((run / "models/tiny-run/validation_metrics.json").read_text())
    for key in ("macro_f1", "topics_macro_f1", "topics_micro_f1", "stance_macro_f1", "stance_accuracy", "loss", "epochs_run"):
        assert round(got[key], 4) == round(expected[key], 4), key
    # not only the kept epoch: every step's training loss and every epoch's validation after the kill
    assert eval_history(run / "work") == eval_history(ref / "work")


def test_resume_skips_a_checkpoint_left_half_written(tmp_path):
    assert last_checkpoint(tmp_path / "none") is None
    for step, complete in [(6, True), (12, True), (18, False)]:  # killed while saving step 18
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}/trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-12")


# -- 3. safe loading -------------------------------------------------------------------------------

def test_resume_reads_the_trainers_torch_files_with_weights_only(trained, tmp_path, tiny_model_dir, compose_cfg,
                                                                 monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(trained["work"], work)
    calls, load = [], torch.load

    def spy(f, *args, **kwargs):
        calls.append((Path(f).name, kwargs.get("weights_only")))
        return load(f, *args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    metrics = train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, trained["files"], **{
        "trainer.num_train_epochs": 3, "paths.work_dir": str(work), "resume": True, "early_stopping_patience": 5})))
    assert metrics["epochs_run"] == 3
    assert {name for name, _ in calls} >= {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    assert all(weights_only is True for _, weights_only in calls), calls  # no arbitrary unpickling
    assert "torch.load" not in Path(sys.modules["train.fit"].__file__).read_text()  # our code reads no torch files


PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def test_a_model_folder_holds_no_pickles(trained):
    from safetensors import safe_open

    for f in trained["model"].iterdir():
        assert f.suffix not in PICKLE_SUFFIXES, f
        if f.name != "model.safetensors":  # text files only: no pickle opcode, no torch.save zip
            head = f.read_bytes()[:4]
            assert not head.startswith(b"\x80") and not head.startswith(b"PK\x03\x04"), f
    with safe_open(trained["model"] / "model.safetensors", framework="pt") as weights:
        assert len(list(weights.keys())) > 0


def test_the_classifier_loads_safetensors_only_and_never_runs_remote_code(trained, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    seen = {}
    for cls in (AutoModelForSequenceClassification, AutoTokenizer):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):
            seen[_name] = kwargs
            return _original(*args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", spy)
    Classifier.from_pretrained(trained["model"])
    assert seen["AutoModelForSequenceClassification"]["use_safetensors"] is True
    assert seen["AutoModelForSequenceClassification"]["trust_remote_code"] is False
    assert seen["AutoTokenizer"]["trust_remote_code"] is False
    monkeypatch.undo()

    pickled = tmp_path / "pickled"  # the same model, weights as a pickle only
    shutil.copytree(trained["model"], pickled)
    from safetensors.torch import load_file
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="model.safetensors: missing"):
        Classifier.from_pretrained(pickled)
    # and past the folder check, transformers itself refuses the pickle (use_safetensors=True)
    import train.inference as inference
    monkeypatch.setattr(inference, "check_model_folder", lambda path: json.loads((Path(path) / "config.json").read_text()))
    with pytest.raises(ModelFolderError, match=re.escape(f"{pickled}: could not be loaded") + ".*model.safetensors"):
        Classifier.from_pretrained(pickled)


def test_no_model_config_trusts_remote_code_by_default(compose_cfg):
    names = sorted(p.stem for p in (PROJECT / "configs/model").glob("*.yaml"))
    assert "e5_small" in names
    for name in names:
        assert compose_cfg([f"model={name}"]).model.trust_remote_code is False, name


# -- 5. bad input --------------------------------------------------------------------------------

def test_a_5_mb_single_line_record_loads_and_a_broken_one_is_reported_briefly(tmp_path):
    schema = LabelSchema(NEWS_SCHEMA)
    big = {"id": "big", "text": "seoul summit hopeful " * 250_000, "lang": "en", "topics": ["summitry"],
           "stance": "positive"}
    small = make_records(2, 4, "s")
    path = write_jsonl(tmp_path / "big.jsonl", [small[0], big, small[1]])
    assert path.stat().st_size > 5_000_000
    records, problems = read_records(path, schema)
    assert problems == [] and [r["_line"] for r in records] == [1, 2, 3]
    assert len(records[1]["text"]) == len(big["text"])

    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:-2], lines[2]]) + "\n")  # the big record cut short
    records, problems = read_records(path, schema)
    assert [r["_line"] for r in records] == [1, 3]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:2: line: invalid JSON")
    assert len(problems[0]) < 300  # the message names the record; it does not echo 5 MB


def test_a_5_mb_record_in_the_training_data_trains(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    big = dict(make_records(1, 5, "big")[0], text="moscow sanctions alarming " * 200_000)
    records = [json.loads(line) for line in tiny_corpus["train"].read_text().splitlines()] + [big]
    files = dict(tiny_corpus, train=write_jsonl(tmp_path / "data/big-train.jsonl", records))
    metrics = train(compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, files, **{"trainer.num_train_epochs": 1})))
    assert metrics["epochs_run"] == 1 and (tmp_path / "models/tiny-run/model.safetensors").is_file()


def test_prediction_input_that_is_json_but_not_text_is_named_not_a_crash(trained, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "seoul summit"}\n{"text": "a", "n": 1' + b"1" * 5000 + b'}\n'
                    + b"[" * 50_000 + b"]" * 50_000 + b'\n{"text": "x \\ud800 y"}\n{"text": "moscow"}\n')
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "train.predict", f"model_dir={trained['model']}", f"input={src}",
               f"output={out}", "progress=false"]
    result = subprocess.run(command, cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"error: {src}:2: line: unreadable JSON" in result.stderr, result.stderr[-2000:]
    assert not out.exists()
    result = subprocess.run([*command, "on_error=skip"], cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for message in (f"{src}:2: line: unreadable JSON", f"{src}:3: line: unreadable JSON",
                    f"{src}:4: line: unpaired surrogate"):
        assert message in result.stderr
    assert "2 paragraph(s) labelled, 3 skipped" in result.stderr and len(out.read_text().splitlines()) == 2


def test_corrupted_weights_are_a_model_folder_error_naming_the_folder(trained, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained["model"], broken)
    (broken / "model.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(ModelFolderError, match=re.escape(str(broken))):
        Classifier.from_pretrained(broken)
    weights = (trained["model"] / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(weights[:len(weights) // 2])  # a copy cut short
    with pytest.raises(ModelFolderError, match=re.escape(str(broken))):
        Classifier.from_pretrained(broken)

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "seoul summit"}])
    out = tmp_path / "out/labels.jsonl"
    out.parent.mkdir()
    result = subprocess.run([sys.executable, "-m", "train.predict", f"model_dir={broken}", f"input={src}",
                             f"output={out}", "progress=false"], cwd=PROJECT, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and f"error: {broken}" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []  # no output, no temporary file


def checkpoint_with_schema(work: Path, task_schema) -> Path:
    """A checkpoint folder as the Trainer leaves it, for a model of `task_schema` (None: no schema)."""
    checkpoint = work / "checkpoints/checkpoint-6"
    checkpoint.mkdir(parents=True)
    config = {"model_type": "bert", "id2label": {}, **({"task_schema": task_schema} if task_schema else {})}
    (checkpoint / "config.json").write_text(json.dumps(config))
    (checkpoint / "trainer_state.json").write_text("{}")
    return checkpoint


def test_resuming_a_checkpoint_of_another_label_schema_stops_before_training(tmp_path, tiny_model_dir, tiny_corpus,
                                                                             compose_cfg):
    # the same labels in another order: the head's outputs would silently be read as the wrong stance
    reordered = [NEWS_SCHEMA[0], dict(NEWS_SCHEMA[1], labels=["negative", "positive", "neutral"])]
    checkpoint = checkpoint_with_schema(tmp_path / "work", reordered)
    result = subprocess.run(cli(tmp_path, tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus), "resume=true"),
                            cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{checkpoint / 'config.json'}: task_schema: " in result.stderr and "differs" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
    assert sorted(p.name for p in (tmp_path / "work/checkpoints").iterdir()) == ["checkpoint-6"]

    other = tmp_path / "other"
    checkpoint = checkpoint_with_schema(other / "work", None)  # not written by this toolkit
    with pytest.raises(DataError, match=re.escape(f"{checkpoint / 'config.json'}: task_schema: ")):
        train(compose_cfg(tiny_overrides(other, tiny_model_dir, tiny_corpus, resume=True)))
