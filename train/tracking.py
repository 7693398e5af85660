"""Where training logs go: `trainer.report_to` picks the Trainer's integrations; TensorBoard and
MLflow write into the run's work folder (Hydra's run folder), never the project root.

    python -m train                               # TensorBoard: logs/train/runs/<time>/tensorboard
    tensorboard --logdir logs/train/runs          # every run side by side
    python -m train trainer.report_to=mlflow      # MLflow: <run folder>/mlflow.db (pip install mlflow first)
    mlflow ui --backend-store-uri sqlite:///logs/train/runs/<time>/mlflow.db
    python -m train trainer.report_to=none

MLflow goes to `MLFLOW_TRACKING_URI` when you set one (a tracking server, say); otherwise to a
SQLite store in the run folder (MLflow 3 no longer writes its old `mlruns/` file store by default),
with artifacts, if any are logged, beside it in `mlflow-artifacts/`.
"""

import importlib.util
import os
from pathlib import Path

# Read once, at import: a sweep runs several jobs in one process, and each job sets these for
# itself; the next job must not mistake the previous job's values for the user's.
USER_MLFLOW_URI = os.environ.get("MLFLOW_TRACKING_URI")
USER_MLFLOW_EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME")
EXPERIMENT = "peninsula"


class TrackingError(Exception):
    """A logger that cannot run here; the message says what to install or choose instead."""


def integrations(report_to) -> list[str]:
    """`trainer.report_to` as a list of names ("all": every integration installed here)."""
    if report_to in (None, "none"):
        return []
    if report_to == "all":
        from transformers.integrations import get_available_reporting_integrations

        return get_available_reporting_integrations()
    return [report_to] if isinstance(report_to, str) else list(report_to)


def configure(trainer_args: dict, work_dir: Path, run_name: str) -> None:
    """Point the loggers named in `trainer_args["report_to"]` at `work_dir` (environment variables
    the Trainer's callbacks read) and name the run; TrackingError if one is not installed."""
    names = integrations(trainer_args.get("report_to", "none"))
    trainer_args.setdefault("run_name", run_name)
    if "tensorboard" in names:
        if not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
            raise TrackingError("trainer.report_to=tensorboard: the tensorboard package is not installed "
                                "(`pip install -e .` installs it); or choose trainer.report_to=none")
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(work_dir) / "tensorboard")
    if "mlflow" in names:
        if not importlib.util.find_spec("mlflow"):
            raise TrackingError("trainer.report_to=mlflow: mlflow is not installed (it is not a dependency of "
                                "peninsula): `pip install mlflow`, or choose trainer.report_to=tensorboard")
        start_mlflow_run(Path(work_dir), trainer_args["run_name"])


def start_mlflow_run(work_dir: Path, run_name: str) -> None:
    """Open the job's MLflow run before the Trainer does, so that the evaluation after training
    logs into it too (a run the Trainer opened is closed at the end of training, and a metric
    logged after that would open a nameless second run). mlflow closes it when the process exits."""
    os.environ["MLFLOW_EXPERIMENT_NAME"] = USER_MLFLOW_EXPERIMENT or EXPERIMENT
    uri = USER_MLFLOW_URI or f"sqlite:///{work_dir.resolve() / 'mlflow.db'}"
    if not USER_MLFLOW_URI and not importlib.util.find_spec("sqlalchemy"):  # mlflow-skinny has no SQL store
        raise TrackingError("trainer.report_to=mlflow: the local store (SQLite in the run folder) needs the full "
                            "`mlflow` package, not mlflow-skinny; or set MLFLOW_TRACKING_URI to your tracking server")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if int(os.environ.get("RANK", "0")) != 0:  # only the main process logs
        return
    import mlflow

    if not USER_MLFLOW_URI:
        work_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    if mlflow.active_run():  # the previous job of a sweep run in this process
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    name = os.environ["MLFLOW_EXPERIMENT_NAME"]
    if not USER_MLFLOW_URI and mlflow.get_experiment_by_name(name) is None:
        # else its artifacts would go to ./mlruns wherever the job was started
        mlflow.create_experiment(name, artifact_location=(work_dir.resolve() / "mlflow-artifacts").as_uri())
    mlflow.set_experiment(name)
    mlflow.start_run(run_name=run_name)
