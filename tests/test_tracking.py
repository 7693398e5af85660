"""Training logs: TensorBoard by default, in the run's own folder; MLflow by override, in the same
folder unless MLFLOW_TRACKING_URI says otherwise, or a clear message when mlflow is missing."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import PROJECT, tiny_overrides

IN_RUN_FOLDER = "paths.work_dir=${hydra:runtime.output_dir}"  # the default, which tiny_overrides replaces


def run_train(tmp_path, *overrides, env=None):
    env = dict(os.environ if env is None else env, TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "train", *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)


def test_the_default_logger_is_tensorboard_in_the_run_folder(tmp_path, tiny_model_dir, tiny_corpus, compose_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    defaults = compose_cfg([])
    assert defaults.trainer.report_to == "tensorboard"
    overrides = tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{"trainer.report_to": "tensorboard",
                                                                         "trainer.num_train_epochs": 1})
    result = run_train(tmp_path, *overrides, IN_RUN_FOLDER)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*"))  # training's, then the final evaluation's
    accumulator = EventAccumulator(str(tmp_path / "run/tensorboard"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "train/loss" in tags and "eval/macro_f1" in tags, tags
    assert not list(PROJECT.glob("runs")) and not list((tmp_path / "run").glob("checkpoints/runs"))


def test_mlflow_by_override_logs_into_the_run_folder_or_says_what_is_missing(tmp_path, tiny_model_dir, tiny_corpus,
                                                                            compose_cfg, monkeypatch):
    from train import tracking
    from train.fit import train

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):  # restored after the test, whatever the run sets
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking, "USER_MLFLOW_URI", None)
    monkeypatch.setattr(tracking, "USER_MLFLOW_EXPERIMENT", None)
    run_folder = tmp_path / "run"
    cfg = compose_cfg(tiny_overrides(tmp_path, tiny_model_dir, tiny_corpus, **{
        "trainer.report_to": "mlflow", "trainer.num_train_epochs": 1, "paths.work_dir": str(run_folder)}))
    assert cfg.trainer.report_to == "mlflow"
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(tracking.TrackingError, match="trainer.report_to=mlflow: mlflow is not installed"):
            train(cfg)
        assert not (tmp_path / "models").exists()
        return
    if importlib.util.find_spec("sqlalchemy") is None:
        with pytest.raises(tracking.TrackingError, match="needs the full `mlflow` package"):
            train(cfg)
        return
    import mlflow

    try:
        train(cfg)
    finally:
        mlflow.end_run()
    client = mlflow.MlflowClient(f"sqlite:///{run_folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("peninsula")
    assert experiment.artifact_location == (run_folder / "mlflow-artifacts").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])  # the evaluation after training joins the run
    assert run.info.run_name == "tiny-run" and "eval_macro_f1" in run.data.metrics and "train_loss" in run.data.metrics
    assert not (PROJECT / "mlruns").exists() and not (PROJECT / "mlflow.db").exists()
