"""Training state, and the one place the layout of a checkpoint is defined.

`TrainState` is everything a resume needs besides the network, optimiser, scaler and schedule: the iteration,
the metrics rows, the best point, the dense training log and its mark, the training statistics since the last
row (`Progress`, kept on the device), and the window of the warm-up that waits for the training error.
`model_payload` + `resumable_payload` write a checkpoint; `restore` reads one back into live objects.

Checkpoint keys (format "reslab-checkpoint", version 1; every kind):
    kind, model {name, kwargs}, model_state, normalization, config, iteration
  and, in resumable checkpoints (kind "resumable", checkpoints/ckpt-<iteration>.pt):
    optimizer, scaler, schedule, rng, rows, best, wall_seconds, train_log, log_mark, progress, warmup_window
    [, progress_ranks when several processes trained]
    [, pending_eval: true when the run stopped at an evaluation point before evaluating (a resume evaluates first)]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from reslab.config import Config, to_dict
from reslab.weights.files import load_weights
from reslab.models import model_kwargs


@dataclass
class Progress:
    """Training statistics accumulated since the last metrics row (kept on the device: no per-step sync)."""

    loss_sum: torch.Tensor
    wrong: torch.Tensor
    seen: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, device):
        return cls(torch.zeros((), dtype=torch.float64, device=device),
                   torch.zeros((), dtype=torch.int64, device=device))

    def state_dict(self):
        return {"loss_sum": self.loss_sum.cpu(), "wrong": self.wrong.cpu(), "seen": self.seen, "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, d, device):
        return cls(d["loss_sum"].to(device), d["wrong"].to(device), d["seen"], d["seconds"])


@dataclass
class TrainState:
    progress: Progress
    warmup_errors: torch.Tensor          # wrong predictions in the current warm-up window (device, int64)
    warmup_seen: int = 0                 # images in that window
    iteration: int = 0
    rows: list = field(default_factory=list)
    best: dict | None = None
    wall_seconds: float = 0.0
    train_log: list = field(default_factory=list)  # the dense training curve (train_log.csv)
    # the global (loss sum, wrong, seen) of the current metrics interval at the last train_log point: the next
    # point is the difference, so the dense curve needs no accumulator (or per-rank state) of its own
    log_mark: list = field(default_factory=lambda: [0.0, 0, 0])
    # stopped at an evaluation point before its evaluation ran: the resume runs it first, as the run would have
    pending_eval: bool = False

    @classmethod
    def fresh(cls, device) -> "TrainState":
        return cls(Progress.zeros(device), torch.zeros((), dtype=torch.int64, device=device))

    def state_dict(self) -> dict:
        """The training state as a checkpoint stores it (`progress` is added by `resumable_payload`)."""
        d = {"rows": self.rows, "best": self.best, "wall_seconds": self.wall_seconds,
             "train_log": self.train_log, "log_mark": self.log_mark}
        return {**d, "pending_eval": True} if self.pending_eval else d

    def load_state_dict(self, ckpt: dict, device, rank: int | None = None, world_size: int = 1) -> None:
        """Restore from a resumable checkpoint. Several processes: each rank takes its own partial sums when
        the checkpoint was written by as many processes (exact); otherwise rank 0 takes the totals."""
        self.iteration, self.rows, self.best = ckpt["iteration"], ckpt["rows"], ckpt["best"]
        self.wall_seconds = ckpt["wall_seconds"]
        self.train_log, self.log_mark = ckpt.get("train_log", []), ckpt.get("log_mark", [0.0, 0, 0])
        self.pending_eval = bool(ckpt.get("pending_eval", False))
        per_rank = ckpt.get("progress_ranks")
        if rank is not None and per_rank is not None and len(per_rank) == world_size:
            self.progress = Progress.from_state_dict(per_rank[rank], device)
        elif not rank:
            self.progress = Progress.from_state_dict(ckpt["progress"], device)
        errors, seen = ckpt.get("warmup_window", [0, 0])
        self.warmup_errors += errors
        self.warmup_seen = seen


def rng_state() -> dict:
    st: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state_all(st["cuda"])


def model_payload(kind: str, cfg: Config, model: torch.nn.Module, normalizer, iteration: int) -> dict:
    """What every checkpoint holds: the network and how to rebuild and feed it."""
    return {"kind": kind, "model": {"name": cfg.model.name, "kwargs": model_kwargs(cfg)},
            "model_state": model.state_dict(), "normalization": normalizer.state_dict(),
            "config": to_dict(cfg), "iteration": iteration}


def resumable_payload(base: dict, optimizer, scaler, schedule, state: TrainState, progress: dict,
                      progress_ranks: list | None) -> dict:
    """A resumable checkpoint: `base` (model_payload) plus everything needed to continue bit for bit."""
    ck = dict(base)
    ck.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), schedule=schedule.state_dict(),
              rng=rng_state(), **state.state_dict(), progress=progress,
              warmup_window=[int(state.warmup_errors), state.warmup_seen])
    if progress_ranks is not None:
        ck["progress_ranks"] = progress_ranks
    return ck


def restore(ckpt: dict, where, model, optimizer, scaler, schedule, state: TrainState, device,
            rank: int | None = None, world_size: int = 1) -> None:
    """Load a resumable checkpoint into the live training objects (the inverse of resumable_payload)."""
    load_weights(model, ckpt["model_state"], where)
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    schedule.load_state_dict(ckpt["schedule"])
    set_rng_state(ckpt["rng"], device)
    state.load_state_dict(ckpt, device, rank, world_size)
