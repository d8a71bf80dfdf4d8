"""Learning-rate schedule as a pure function of the iteration (plus one bit of warm-up state).

Two shapes after any warm-up (optim.schedule): "step", the paper's — lr x gamma at each milestone — and
"linear" — from lr down to 0 at the end of training, in a straight line that starts where the warm-up ends.
Because the lr is recomputed from the iteration at every step, a resumed run cannot drift from an
uninterrupted one; the only state is when the paper's "warm up until training error < 80%" ended.
"""
from __future__ import annotations

from reslab.config import Config, Schedule


def shape_words(cfg: Config, sched: Schedule) -> str:
    """The schedule after warm-up in words: 'lr x0.1 at iterations 1,000, 1,500' or 'lr decays linearly to 0 at
    iteration 2,000'."""
    if cfg.optim.schedule == "linear":
        return f"lr decays linearly to 0 at iteration {sched.iterations:,}"
    return f"lr x{cfg.optim.gamma} at iterations {', '.join(f'{m:,}' for m in sched.milestones)}"


class LRSchedule:
    def __init__(self, cfg: Config, sched: Schedule, depth: int | None = None):
        o = cfg.optim
        self.base_lr, self.gamma, self.milestones = o.lr, o.gamma, sched.milestones
        self.shape, self.iterations = o.schedule, sched.iterations
        active = o.warmup != "none" and (depth is None or depth >= o.warmup_from_depth)
        self.warmup = o.warmup if active else "none"
        self.warmup_iterations = o.warmup_iterations
        self.warmup_lr = o.warmup_lr
        self.until_error = o.warmup_until_train_error
        # Iteration at which a constant warm-up ended (None while it lasts).
        self.warmup_ended_at: int | None = None if self.warmup == "constant" else 0

    def lr(self, it: int) -> float:
        if self.warmup == "linear" and it < self.warmup_iterations:
            return self.base_lr * (it + 1) / self.warmup_iterations
        if self.warmup == "constant" and self.in_warmup(it):
            return self.warmup_lr
        if self.shape == "linear":
            start = self.warmup_end()
            return self.base_lr * max(0, self.iterations - it) / max(1, self.iterations - start)
        return self.base_lr * self.gamma ** sum(it >= m for m in self.milestones)

    def warmup_end(self) -> int:
        """The first iteration after the warm-up (0 without one), where a linear decay starts from lr: a constant
        warm-up ends when the training error drops (warmup_ended_at) or at its cap, warmup_iterations."""
        if self.warmup == "linear":
            return self.warmup_iterations
        if self.warmup == "constant":
            return self.warmup_ended_at if self.warmup_ended_at is not None else self.warmup_iterations
        return 0

    def in_warmup(self, it: int) -> bool:
        if self.warmup != "constant":
            return False
        if self.warmup_ended_at is not None:
            return it < self.warmup_ended_at
        return not (self.warmup_iterations and it >= self.warmup_iterations)

    def needs_error(self, it: int) -> bool:
        """True while a constant warm-up waits for the training error to drop."""
        return self.warmup == "constant" and self.until_error is not None and self.warmup_ended_at is None

    def observe_error(self, it: int, train_error_pct: float) -> bool:
        """Feed the recent training error; returns True when this ends the warm-up."""
        if self.needs_error(it) and self.until_error is not None and train_error_pct < self.until_error:
            self.warmup_ended_at = it
            return True
        return False

    def state_dict(self) -> dict:
        return {"warmup_ended_at": self.warmup_ended_at}

    def load_state_dict(self, d: dict) -> None:
        self.warmup_ended_at = d.get("warmup_ended_at", self.warmup_ended_at)
