"""MLflow: one MLflow run per reslab run, in one experiment per study (named after the study directory).

The store is `log.mlflow_uri`, else $MLFLOW_TRACKING_URI, else a local sqlite file beside the runs
(sqlite:///STUDY/mlflow.db, or RUNS_DIR/mlflow.db): MLflow's plain file store is being retired. Browse it with
`mlflow ui --backend-store-uri sqlite:///STUDY/mlflow.db`. Talking to a server, waits are bounded: a few retries
of at most 10 s each (MLflow's own defaults retry for minutes), so a dead server costs a run seconds, once.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from reslab import layout
from reslab.trackers import TrackedRun, Tracker, flat_params, numbers

STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


def tracking_uri(run: TrackedRun) -> str:
    return run.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run.root.resolve() / 'mlflow.db'}"


class MLflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, run: TrackedRun, stored: dict):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.entities import Metric, Param  # needs the mlflow package (the [mlflow] extra)
        from mlflow.tracking import MlflowClient

        self.Metric, self.Param = Metric, Param
        self.uri = stored.get("tracking_uri") or tracking_uri(run)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = stored.get("run_id") or self.client.create_run(
            experiment_id(self.client, run), run_name=run.name,
            tags={"reslab.run_dir": str(run.run_dir.resolve()), "reslab.study": run.group or ""}).info.run_id
        if stored.get("run_id"):
            self.client.update_run(self.run_id, status="RUNNING")

    def ids(self) -> dict:
        return {"run_id": self.run_id, "tracking_uri": self.uri}

    def log_config(self, params: dict) -> None:
        self.client.log_batch(self.run_id, params=[self.Param(k, str(v)) for k, v in flat_params(params).items()])

    def log_numbers(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.Metric(k, v, now, step) for k, v in values.items()])

    def log_point(self, point: dict, step: int) -> None:
        self.log_numbers(numbers(point, "train_log"), step)

    def log_row(self, row: dict, step: int) -> None:
        self.log_numbers(numbers(row, "metrics"), step)

    def log_summary(self, summary: dict) -> None:
        self.client.log_dict(self.run_id, summary, layout.SUMMARY_FILE)

    def log_files(self, paths: list[Path], kind: str) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p), artifact_path=kind)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=STATUS.get(status, "FINISHED"))


def experiment_id(client, run: TrackedRun) -> str:
    """The study's experiment (or log.project's), created on first use; artifacts of a local store go beside it."""
    name = run.group or run.project
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    local = client.tracking_uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_ARTIFACT_ROOT")
    where = (run.root.resolve() / "mlflow-artifacts").as_uri() if local else None
    return client.create_experiment(name, artifact_location=where)


def open_tracker(run: TrackedRun, stored: dict) -> Tracker:
    return MLflowTracker(run, stored)
