"""Weights & Biases: one W&B run per reslab run, grouped by study (the group is the study directory's name).

The W&B run id is chosen here and stored in the run directory before `wandb.init`, so a resumed run (even one
killed before its first checkpoint) continues the same W&B run (`resume="allow"`). Waits are bounded: wandb.init
gives up after 60 s (no network, bad key), and logging is asynchronous. Offline (`WANDB_MODE=offline`), runs are
kept in RUN_DIR/wandb for `wandb sync`.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from reslab.trackers import TrackedRun, Tracker, flat_params, numbers

INIT_TIMEOUT_S = 60


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, run: TrackedRun, stored: dict):
        import wandb  # needs the wandb package (the [wandb] extra)

        self.wandb = wandb
        self.id = stored.get("id") or uuid.uuid4().hex[:16]
        self.run = wandb.init(project=run.project, group=run.group, name=run.name, id=self.id, resume="allow",
                              dir=str(run.run_dir), job_type="train", reinit="create_new",
                              settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True))

    def ids(self) -> dict:
        return {"id": self.id}

    def log_config(self, params: dict) -> None:
        self.run.config.update(flat_params(params), allow_val_change=True)

    def log_point(self, point: dict, step: int) -> None:
        self.run.log(numbers(point, "train_log"), step=step)

    def log_row(self, row: dict, step: int) -> None:
        self.run.log(numbers(row, "metrics"), step=step)

    def log_summary(self, summary: dict) -> None:
        self.run.summary.update({k: v for k, v in summary.items() if v is not None})

    def log_files(self, paths: list[Path], kind: str) -> None:
        art = self.wandb.Artifact(f"{self.run.name}-{kind}".replace("/", "-"), type=kind)
        for p in paths:
            art.add_file(str(p))
        self.run.log_artifact(art)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


def open_tracker(run: TrackedRun, stored: dict) -> Tracker:
    return WandbTracker(run, stored)
