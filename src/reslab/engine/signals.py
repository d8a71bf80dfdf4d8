"""Stopping a run cleanly on a signal: the one table of signals that mean "checkpoint and stop".

First signal: the trainer finishes the current step, checkpoints and returns. Second: stop at once
(KeyboardInterrupt). `STOP_SIGNALS` is the only list of such signals. SIGUSR2 is SLURM's warning before a time
limit or a preemption (`--signal=USR2@90`, as submitit asks for): the run checkpoints at the next step boundary
and the summary names the signal, so a cluster launcher (reslab.launchers.slurm) requeues it, and the requeued
job resumes exactly.
"""
from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Callable

STOP_SIGNALS = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate", signal.SIGUSR2: "preemption (SLURM)"}

# what `signal.signal` returns and takes: a handler, SIG_DFL / SIG_IGN, or None (installed outside Python)
Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def exit_code(stopped_by: str | None) -> int:
    """The exit status of a command whose run stopped on `stopped_by` ("SIGINT" ...): 128 + the signal, as
    shells expect (130 for Ctrl-C, 143 for SIGTERM), so a script can tell a stop from an end; 0 otherwise."""
    if stopped_by is None or stopped_by not in signal.Signals.__members__:
        return 0
    return 128 + signal.Signals[stopped_by].value


def signal_name(signum: int | None) -> str | None:
    """"SIGUSR2" for a signal number; None when the stop was not a signal (`stop_after`)."""
    return signal.Signals(signum).name if signum is not None else None


class StopRequest:
    """A context manager that turns the signals in STOP_SIGNALS into `requested = True` (and `signum`).

    echo_grace: a second signal this soon after the first is the same request (under torchrun a Ctrl-C reaches
    every worker twice: from the terminal, and forwarded by torchrun)."""

    def __init__(self, echo_grace: float = 0.0, announce: bool = True):
        self.requested = False
        self.signum: int | None = None
        self._old: dict[signal.Signals, Handler] = {}
        self._first: float | None = None  # when the first signal came (set with `requested`)
        self.echo_grace, self.announce = echo_grace, announce

    def __enter__(self):
        for sig in STOP_SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if self.echo_grace and self._first is not None and time.monotonic() - self._first < self.echo_grace:
                return
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        self._first = time.monotonic()
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: saving a checkpoint at the next step boundary "
                  f"(press Ctrl-C again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
