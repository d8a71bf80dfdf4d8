"""Everything a run writes to its directory, written by rank 0 only, under the run's lock.

A `RunWriter` on rank 0 writes; on every other rank of a torchrun job each method is a no-op, except
`save_resumable`, which every rank calls together (rank 0 writes, the others wait for it and share its errors).
So the trainer never asks which rank it is on. Opening a writer takes the run directory's lock (engine/lock.py):
a second process writing the same run is refused, on every rank, before it has written anything.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch

from reslab import ReslabError, layout
from reslab.config import Config, dump_yaml
from reslab.engine import lock, runs

from reslab.engine.summary import RunSummary, write_summary
from reslab.weights.files import prune_checkpoints, save_checkpoint


class RunWriter:
    def __init__(self, ctx, run_dir: Path, quiet: bool):
        self.ctx, self.run_dir, self.quiet = ctx, Path(run_dir), quiet
        self.main = ctx.main
        self.runlog = runs.RunLog(self.run_dir, quiet) if ctx.main else None
        self.lock: lock.DirLock | None = None
        ctx.on_main(self.take_lock)

    def take_lock(self) -> None:
        self.lock = lock.acquire(self.run_dir, "run", partial(self.log, always=True))

    def close(self) -> None:
        """Release the run's lock (the writer writes nothing more)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @classmethod
    def create(cls, ctx, runs_dir: Path, cfg: Config, device: torch.device, run_name: str | None,
               quiet: bool, extra_env: dict | None = None) -> "RunWriter":
        """A new run directory (rank 0 makes it; every rank learns its path); `extra_env` goes into env.json."""
        run_dir = ctx.on_main(partial(create_run_dir, Path(runs_dir), cfg, device, run_name,
                                       {**distributed_env(ctx, cfg, device), **(extra_env or {})}))
        return cls(ctx, run_dir, quiet)

    def log(self, msg: str, always: bool = False) -> None:
        if self.runlog is not None:
            self.runlog(msg, always)

    def write_logs(self, state) -> None:
        """Both CSVs, rewritten whole from the rows held in the training state."""
        if self.main:
            runs.write_metrics(self.run_dir / layout.METRICS_FILE, state.rows)
            runs.write_metrics(self.run_dir / layout.TRAIN_LOG_FILE, state.train_log, runs.TRAIN_LOG_FIELDS)

    def write_summary(self, s: RunSummary) -> None:
        if self.main:
            write_summary(self.run_dir, s)

    def write_tracker_ids(self, ids: dict) -> None:
        if self.main:
            runs.write_json(self.run_dir / layout.TRACKERS_FILE, ids)

    def write_test_eval(self, result: dict) -> None:
        if self.main:
            runs.write_json(self.run_dir / layout.TEST_EVAL_FILE, result)

    def write_correct(self, doc: dict) -> None:
        """correct.json: the per-image correctness of the latest evaluation point (engine/correct.py)."""
        if self.main:
            runs.write_json(self.run_dir / layout.CORRECT_FILE, doc)

    def save(self, build: Callable[[], dict], name: str) -> None:
        """A checkpoint that is not needed to resume (best.pt, snapshots): rank 0 builds and writes it."""
        if self.main:
            save_checkpoint(build(), layout.checkpoints_dir(self.run_dir) / name)

    def save_resumable(self, build: Callable[[], dict], iteration: int, keep: int) -> None:
        """checkpoints/ckpt-<iteration>.pt, then prune to the newest `keep`. Every rank calls this together."""
        self.ctx.on_main(partial(_save_and_prune, layout.checkpoints_dir(self.run_dir), build, iteration, keep))


def _save_and_prune(ckpt_dir: Path, build: Callable[[], dict], iteration: int, keep: int) -> None:
    save_checkpoint(build(), ckpt_dir / layout.checkpoint_name(iteration))
    prune_checkpoints(ckpt_dir, keep)


def distributed_env(ctx, cfg: Config, device: torch.device) -> dict:
    """What env.json records about a torchrun job (nothing for one process)."""
    if not ctx.enabled:
        return {}
    return {"world_size": ctx.world_size, "backend": "nccl" if device.type == "cuda" else "gloo",
            "batch_per_process": cfg.train.batch_size // ctx.world_size, "sync_bn": cfg.train.sync_bn}


def create_run_dir(runs_dir: Path, cfg: Config, device: torch.device, run_name: str | None, extra_env: dict) -> Path:
    """Make the run directory with its config, environment and empty CSVs (rank 0 only). Nobody else writes it:
    it did not exist, and a `--resume` of it finds no checkpoint until the writer, locked, has made one."""
    run_dir = runs.new_run_dir(runs_dir, cfg.model.name, exact=run_name)
    try:
        layout.checkpoints_dir(run_dir).mkdir()
        (run_dir / layout.CONFIG_FILE).write_text(dump_yaml(cfg))
        env = runs.environment(device, cfg.train.seed)
        env.update(extra_env)
        runs.write_json(run_dir / layout.ENV_FILE, env)
        runs.write_metrics(run_dir / layout.METRICS_FILE, [])
        runs.write_metrics(run_dir / layout.TRAIN_LOG_FILE, [], runs.TRAIN_LOG_FIELDS)
    except OSError as e:  # disk full, permissions: nothing trained yet, so nothing to resume
        raise ReslabError(f"cannot write to {run_dir} ({e.strerror or e}); nothing was trained") from None
    return run_dir
