"""Experiment trackers: where a run's numbers go besides its CSV files (TensorBoard, MLflow, Weights & Biases).

A tracker is a `Tracker` (one module each, named in TRACKERS, imported only when a config asks for it). The
trainer opens them with `open_trackers` on rank 0 only and hands every call to the `Trackers` fan-out, which
switches a tracker off for the rest of the run the first time it raises, with one warning line: a tracker never
kills or stalls training (each one bounds its own waits), and the CSV files hold every number anyway.

What a tracker receives: the resolved config once (`log_config`), every dense training-log point and every
metrics row with the iteration as step, the final summary, and at the end of a study the report's files
(`log_study_report`). Each tracker run stores its id in the run directory (trackers.json), so a resumed run
continues the same tracker run.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# config.LOGGERS names the same three (the config layer is below this one); tests check they agree.
# Each also names its extra: pip install -e ".[NAME]".
TRACKERS = {"tensorboard": "reslab.trackers.tensorboard", "mlflow": "reslab.trackers.mlflow",
            "wandb": "reslab.trackers.wandb"}


@dataclass
class TrackedRun:
    """Who a tracker run is: the run directory, its name, its study (the group) and where local stores go."""

    run_dir: Path
    name: str
    group: str | None    # the study directory's name when the run is one of a study's, else None
    root: Path           # local stores (MLflow's sqlite file): the study directory, else the runs directory
    project: str         # cfg.log.project
    mlflow_uri: str | None
    resumed_at: int | None = None  # the iteration a resumed run continues from (None: a new run)


class Tracker:
    """One tracker run. Every method may raise: the `Trackers` fan-out switches the tracker off."""

    name = "tracker"

    def ids(self) -> dict:
        """What a resume needs to continue this tracker run (stored in trackers.json)."""
        return {}

    def log_config(self, params: dict) -> None:
        """The resolved config, flattened to {"section.key": value}."""

    def log_point(self, point: dict, step: int) -> None:
        """A point of the dense training log (train_log.csv) at iteration `step`."""

    def log_row(self, row: dict, step: int) -> None:
        """A metrics row (an evaluation, metrics.csv) at iteration `step`."""

    def log_summary(self, summary: dict) -> None:
        """The run's summary.json when it ends."""

    def log_files(self, paths: list[Path], kind: str) -> None:
        """Files to keep with the tracker run (a study's report)."""

    def close(self, status: str) -> None:
        """status: finished | interrupted | failed."""


def numbers(d: dict, prefix: str) -> dict[str, float]:
    """{prefix/key: value} for every number in a row or point except its iteration (the step)."""
    return {f"{prefix}/{k}": float(v) for k, v in d.items()
            if k != "iteration" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def flat_params(cfg: dict) -> dict:
    """{"optim.lr": 0.1, ...}: the config as one level of parameters."""
    return {f"{sec}.{k}": v for sec, section in cfg.items() for k, v in section.items()}


class Trackers:
    """Every open tracker; the first call that raises closes that tracker and drops it, with one warning."""

    def __init__(self, trackers: list[Tracker], warn: Callable[[str], None]):
        self.trackers, self.warn = list(trackers), warn

    def call(self, method: str, *args) -> None:
        for tr in list(self.trackers):
            try:
                getattr(tr, method)(*args)
            except Exception as e:  # a tracker never stops training
                self.trackers.remove(tr)
                self.warn(f"warning: {tr.name} failed in {method} ({type(e).__name__}: {str(e)[:200]}); it is off for "
                          f"the rest of this run (the CSV files have every number)")
                shut(tr, "failed")

    def log_config(self, params: dict) -> None:
        self.call("log_config", params)

    def log_point(self, point: dict, step: int) -> None:
        self.call("log_point", point, step)

    def log_row(self, row: dict, step: int) -> None:
        self.call("log_row", row, step)

    def log_summary(self, summary: dict) -> None:
        self.call("log_summary", summary)

    def log_files(self, paths: list[Path], kind: str) -> None:
        self.call("log_files", paths, kind)

    def ids(self) -> dict:
        return {tr.name: tr.ids() for tr in self.trackers if tr.ids()}

    def close(self, status: str) -> None:
        for tr in self.trackers:
            shut(tr, status)
        self.trackers = []


def shut(tr: Tracker, status: str) -> None:
    """Close a tracker, ignoring its errors: it is being dropped either way."""
    try:
        tr.close(status)
    except Exception:
        pass


def open_trackers(names: list[str], run: TrackedRun, stored: dict, warn: Callable[[str], None]) -> Trackers:
    """The trackers `names` asks for; `stored` is trackers.json of a resumed run ({} for a new one). One that
    cannot be opened (package missing, no network, bad key) is left out with one warning."""
    opened = []
    for name in names:
        try:
            module = importlib.import_module(TRACKERS[name])
            opened.append(module.open_tracker(run, stored.get(name, {})))
        except ImportError as e:
            warn(f"warning: train.loggers has {name} but it cannot be imported ({e}); pip install -e "
                 f"\".[{name}]\" — it is off for this run (the CSV files have every number)")
        except Exception as e:
            warn(f"warning: {name} could not start ({type(e).__name__}: {str(e)[:200]}); it is off for this run "
                 f"(the CSV files have every number)")
    return Trackers(opened, warn)


def log_study_report(names: list[str], run: TrackedRun, files: list[Path], warn: Callable[[str], None]) -> None:
    """A study's report files as artifacts of one tracker run named after the report, in the study's W&B group /
    MLflow experiment. TensorBoard keeps no files, so it is not asked."""
    trackers = open_trackers([n for n in names if n != "tensorboard"], run, {}, warn)
    trackers.log_files(files, "report")
    trackers.close("finished")
