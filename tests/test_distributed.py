"""Several processes: `torchrun` on the CPU (gloo) trains through the Trainer's DDP, only rank 0 writes
the model folder, and the model matches a one-process run with the same global batch size."""

import json
import os
import subprocess
import sys

import pytest

from conftest import PROJECT, tiny_overrides

TORCHRUN = PROJECT / ".venv/bin/torchrun"
# One thread per process: two ranks on two cores; more threads only contend.
ENV = dict(os.environ, HYDRA_FULL_ERROR="0", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed in .venv")


def run(command, tmp):
    return subprocess.run([*command, f"hydra.run.dir={tmp / 'hydra'}"], cwd=PROJECT, env=ENV, capture_output=True,
                          text=True, timeout=600)


def torchrun(*overrides):
    # --standalone: a local rendezvous on a free port (a fixed --master_port can collide, port 0 hangs)
    return [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "train", *overrides]


def test_two_processes_train_one_model_equivalent_to_one_process(tmp_path, tiny_model_dir, tiny_corpus):
    # long enough to learn the tiny corpus, so that the comparison means something
    settings = {"trainer.num_train_epochs": 20, "early_stopping_patience": 20}
    one = run([sys.executable, "-m", "train",
               *tiny_overrides(tmp_path / "one", tiny_model_dir, tiny_corpus, **settings)], tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(torchrun(*tiny_overrides(tmp_path / "two", tiny_model_dir, tiny_corpus, **settings,
                                       **{"trainer.per_device_train_batch_size": 8})), tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]

    models = tmp_path / "two/models"
    assert sorted(p.name for p in models.iterdir()) == ["latest", "tiny-run"]  # no temporary folders left
    assert os.readlink(models / "latest") == "tiny-run"
    assert two.stdout.count("model saved to") == 1  # rank 0 alone saved and reported
    single, double = tmp_path / "one/models/tiny-run", models / "tiny-run"
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in double.iterdir())
    config_1, config_2 = (json.loads((d / "config.json").read_text()) for d in (single, double))
    assert config_1["id2label"] == config_2["id2label"] and config_1["task_schema"] == config_2["task_schema"]

    # it really was data-parallel: 2 RNG states per checkpoint, 96 examples / (2 x 8) = 6 steps per epoch
    checkpoint = max((tmp_path / "two/work/checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 6 * 20

    metrics_1, metrics_2 = (json.loads((d / "validation_metrics.json").read_text()) for d in (single, double))
    assert metrics_1["macro_f1"] > 0.6 and abs(metrics_1["macro_f1"] - metrics_2["macro_f1"]) < 0.1
    # the same loss scale: a per-batch mean is not multiplied by the number of processes
    losses = [float(r.stdout.split("'train_loss': '")[1].split("'")[0]) for r in (one, two)]
    assert losses[1] == pytest.approx(losses[0], rel=0.25), losses


def test_processes_that_resolve_different_work_dirs_share_rank_0s(tmp_path, tiny_model_dir, tiny_corpus):
    # each process composes its own config; with the default `${now:...}` work_dir two processes
    # starting either side of a second boundary would disagree. RANK forces the disagreement.
    overrides = tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.num_train_epochs": 2, "trainer.per_device_train_batch_size": 8,
        "paths.work_dir": str(tmp_path) + "/work-${oc.env:RANK}"})
    result = run(torchrun(*overrides), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "work-1").exists()
    for checkpoint in (tmp_path / "work-0/checkpoints").iterdir():  # whole checkpoints, resumable
        assert {"model.safetensors", "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"} <= \
            {p.name for p in checkpoint.iterdir()}
    assert "Could not locate the best model" not in result.stdout + result.stderr
