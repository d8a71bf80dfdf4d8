"""Where everything of a run and of a study lies on disk: every file name and path, spelled here and nowhere else
(tests/test_architecture.py scans the source for a name spelled outside this module).

    RUN/                                a run directory (`reslab train`, or STUDY/runs/<name>/)
      config.yaml                       the config as the run resolved it (what makes a folder a run, with checkpoints/)
      env.json                          versions, device, CPU, what the `auto` settings chose
      train.log                         the log, as printed
      metrics.csv                       one row per evaluation
      train_log.csv                     the dense training curve (every train.log_every iterations)
      summary.json                      status, final and best rows (reslab.engine.summary.RunSummary)
      test_eval.json                    the final test evaluation, per class and confusion matrix
      correct.json                      per-image correctness of the latest evaluation (the paired verdicts)
      trackers.json                     the tracker runs' ids, so that a resumed run continues the same ones
      .lock                             held by the one process writing the run (reslab.engine.lock)
      checkpoints/ckpt-00001234.pt      resumable checkpoints, the newest few
      checkpoints/best.pt               the lowest validation error so far
      checkpoints/snapshot-00001234.pt  weights kept at train.snapshots (gradient flow, Fig. 7 over training)
    STUDY/
      study.json                        marks a study directory: its spec and plan
      .lock                             held by the one process running the study
      jobs.json                         the cluster jobs of its runs, when a launcher submitted them
      runs/<name>/                      its runs, as above
      report/report.md, report.html     its report (and the report's figures and CSVs beside them)
"""
from __future__ import annotations

import re
from pathlib import Path

CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.csv"
TRAIN_LOG_FILE = "train_log.csv"
SUMMARY_FILE = "summary.json"
TEST_EVAL_FILE = "test_eval.json"
CORRECT_FILE = "correct.json"
TRACKERS_FILE = "trackers.json"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"
BEST_FILE = "best.pt"
STUDY_FILE = "study.json"
STUDY_RUNS = "runs"
JOBS_FILE = "jobs.json"
REPORT_DIR = "report"
REPORT_MD, REPORT_HTML = "report.md", "report.html"

CKPT_PREFIX, SNAPSHOT_PREFIX = "ckpt-", "snapshot-"
CKPT_RE = re.compile(r"ckpt-(\d+)\.pt")
SNAPSHOT_RE = re.compile(r"snapshot-(\d+)\.pt")



def checkpoint_name(iteration: int) -> str:
    """A resumable checkpoint's file name: ckpt-00001234.pt (sorts by iteration)."""
    return f"{CKPT_PREFIX}{iteration:08d}.pt"


def snapshot_name(iteration: int) -> str:
    """A weight snapshot's file name: snapshot-00001234.pt."""
    return f"{SNAPSHOT_PREFIX}{iteration:08d}.pt"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def study_runs_dir(study_dir: str | Path) -> Path:
    """Where a study's runs lie: STUDY/runs/."""
    return Path(study_dir) / STUDY_RUNS


def study_run_dir(study_dir: str | Path, name: str) -> Path:
    """One run of a study: STUDY/runs/<name>/."""
    return study_runs_dir(study_dir) / name


def report_dir(study_dir: str | Path) -> Path:
    """Where a study's report lies: STUDY/report/."""
    return Path(study_dir) / REPORT_DIR


def snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """A run's weight snapshots as (iteration, path), in the order of training (none without checkpoints/)."""
    folder = checkpoints_dir(run_dir)
    found = ((SNAPSHOT_RE.fullmatch(p.name), p) for p in (folder.iterdir() if folder.is_dir() else ()))
    return sorted((int(m.group(1)), p) for m, p in found if m)
