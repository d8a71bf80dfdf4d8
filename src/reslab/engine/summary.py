"""A run's summary.json as one typed record, read and written only here.

The trainer rewrites it at every evaluation and when the run ends (status running -> finished, failed or
interrupted); studies, the status command, reports, model cards and launchers read it. A run directory without
one (a run not started yet, or one whose process died before its first evaluation) reads as status MISSING;
what that means for a caller (pending, resumable, "not trained") is the caller's to say, from that one value.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from reslab import layout
from reslab.engine.runs import read_json, write_json

MISSING = "missing"  # the status of a run directory that holds no summary.json
STATUSES = ("running", "interrupted", "finished", "failed")  # what a written summary says


@dataclass
class RunSummary:
    status: str                            # one of STATUSES, or MISSING
    error: str | None = None               # failed: the one-line reason
    model: str | None = None
    shortcut: str | None = None
    parameters: int | None = None
    iterations_done: int = 0
    iterations: int | None = None          # the run's length
    final: dict | None = None              # the newest metrics row
    best: dict | None = None               # the row of the lowest validation error (test error *at* it)
    best_selected_on: str | None = None    # "validation" when there is a best
    wall_seconds: float | None = None
    train_images_per_s: float | None = None
    # interrupted runs only (written together; absent from the file otherwise)
    stopped_by: str | None = None          # the signal's name (a launcher requeues SIGUSR2)
    evaluation_pending: bool | None = None  # stopped at an evaluation point: the resume evaluates first
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    def to_json(self) -> dict:
        """The on-disk layout: every field in order, the two interrupted-only ones only when set."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _OPTIONAL + ("extra",)}
        if self.evaluation_pending is not None:
            d.update(stopped_by=self.stopped_by, evaluation_pending=self.evaluation_pending)
        return {**d, **self.extra}

    @classmethod
    def from_json(cls, d: dict) -> "RunSummary":
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{"status": MISSING, **{k: v for k, v in d.items() if k in known}},
                   extra={k: v for k, v in d.items() if k not in known})


_OPTIONAL = ("stopped_by", "evaluation_pending")


def summary_path(run_dir: Path) -> Path:
    return Path(run_dir) / layout.SUMMARY_FILE


def read_summary(run_dir: Path) -> RunSummary:
    """The run's summary, or one of status MISSING if it has written none (or the directory does not exist)."""
    path = summary_path(run_dir)
    return RunSummary.from_json(read_json(path)) if path.is_file() else RunSummary(MISSING)


def write_summary(run_dir: Path, summary: RunSummary) -> None:
    """Atomically (a reader sees the old summary or the new one, never half of one)."""
    write_json(summary_path(run_dir), summary.to_json())
