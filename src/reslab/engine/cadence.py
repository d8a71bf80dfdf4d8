"""What the training loop does after a step, as a pure function of where the run stands.

The loop (reslab.engine.trainer.train_loop) takes one step, then asks `decide` what this iteration calls for and
does exactly that, in this order:

    snapshot   keep the weights (train.snapshots, as iterations of the schedule; never at iteration 0 here)
    log        a point of the dense training curve (every `log_every` iterations and at every evaluation point)
    tick_end   close the timed stretch of training (evaluation time is not training time)
    close_bar  the progress bar ends (an epoch or an evaluation interval ended)
    evaluate   evaluate, record the metrics row, write the logs, checkpoint
    stop       checkpoint at this step boundary and return; at an evaluation point the evaluation is not run
               but kept pending (`pending_eval`: the resumed run runs it first, as the run would have)

An evaluation point is every `eval_every` iterations and the last iteration. A stop asked for at the last
iteration is no stop: the run simply finishes. Nothing here reads a clock, a tensor or a file, so every
boundary is tested as a table (tests/test_loop.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from reslab.config import Schedule


@dataclass(frozen=True)
class Cadence:
    """A run's fixed rhythm, in iterations."""

    total: int
    steps_per_epoch: int
    eval_every: int
    log_every: int
    snapshots: frozenset[int]

    @classmethod
    def of(cls, sched: Schedule, eval_every: int, log_every: int) -> Cadence:
        """From the schedule and train.eval_every / train.log_every (0: every epoch / a fifth of eval_every)."""
        every = eval_every or sched.steps_per_epoch
        return cls(sched.iterations, sched.steps_per_epoch, every, log_every or max(1, every // 5),
                   frozenset(s for s in sched.snapshots if s > 0))


@dataclass(frozen=True)
class Decision:
    snapshot: bool = False
    log: bool = False
    tick_end: bool = False
    close_bar: bool = False
    evaluate: bool = False
    stop: bool = False
    pending_eval: bool = False


def decide(iteration: int, c: Cadence, stopping: bool) -> Decision:
    """What to do once the step that reached `iteration` (1..total) is done; `stopping`: a stop was asked for
    (a signal, or the caller's stop_after) and, when distributed, agreed by every process at this step."""
    if not 1 <= iteration <= c.total:
        raise ValueError(f"iteration {iteration} outside 1..{c.total}")
    last = iteration == c.total
    at_eval = iteration % c.eval_every == 0 or last
    stop = stopping and not last
    return Decision(snapshot=iteration in c.snapshots,
                    log=at_eval or iteration % c.log_every == 0,
                    tick_end=at_eval or stopping,
                    close_bar=at_eval or iteration % c.steps_per_epoch == 0,
                    evaluate=at_eval and not stop,
                    stop=stop,
                    pending_eval=at_eval and stop)
