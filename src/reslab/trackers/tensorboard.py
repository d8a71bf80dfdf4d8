"""TensorBoard: event files in RUN_DIR/tensorboard (`tensorboard --logdir RUNS_OR_STUDY_DIR`).

Scalars are tagged metrics/<column> (metrics.csv) and train_log/<column> (train_log.csv) at the iteration, so
what TensorBoard shows is exactly what the CSV files hold. A resumed run purges the events after its checkpoint
(`purge_step`): steps logged past it by the process that stopped are hidden, not doubled.
"""
from __future__ import annotations

import json

import yaml

from reslab.trackers import TrackedRun, Tracker, numbers


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, run: TrackedRun):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (the [tensorboard] extra)

        purge = None if run.resumed_at is None else run.resumed_at + 1
        self.writer = SummaryWriter(log_dir=str(run.run_dir / "tensorboard"), purge_step=purge)

    def log_config(self, params: dict) -> None:
        self.writer.add_text("config", "```\n" + yaml.safe_dump(params, sort_keys=False) + "```", 0)

    def log_point(self, point: dict, step: int) -> None:
        for tag, v in numbers(point, "train_log").items():
            self.writer.add_scalar(tag, v, step)

    def log_row(self, row: dict, step: int) -> None:
        for tag, v in numbers(row, "metrics").items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()

    def log_summary(self, summary: dict) -> None:
        self.writer.add_text("summary", "```\n" + json.dumps(summary, indent=2, default=str) + "\n```",
                             summary.get("iterations_done", 0))

    def close(self, status: str) -> None:
        self.writer.close()


def open_tracker(run: TrackedRun, stored: dict) -> Tracker:
    return TensorBoardTracker(run)
