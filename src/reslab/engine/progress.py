"""What a person watching a run sees while it trains: a per-epoch progress display and the one throughput
estimator.

`rate` is the single place images per second are computed (the display and the metrics rows use it);
`eta_text` turns a remaining time into words. On a terminal the display is a tqdm bar; when stderr is not a
terminal (a log file, a pipe, a cluster job) it is a plain line every `PLAIN_EVERY` seconds, so a log does not
fill with bar refreshes.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_EVERY = 30.0  # seconds between plain progress lines


def rate(images: int | float, seconds: float) -> float:
    """Images per second over `seconds` of training."""
    return images / max(seconds, 1e-9)


def eta_text(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def status(loss: float, error_pct: float, lr: float, images_per_s: float, run_eta_s: float | None) -> str:
    """The short status after the bar: short enough that an 80-column terminal keeps a usable bar."""
    return f"loss {loss:.3f} err {error_pct:.0f}% lr {lr:.3g} {images_per_s:.0f}/s run ETA {eta_text(run_eta_s)}"


class EpochBar:
    """A tqdm bar over the steps of one epoch (stderr), with loss, error, lr, img/s and the whole run's ETA."""

    def __init__(self, epoch: int, steps_per_epoch: int, done_in_epoch: int, total: int):
        steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
        self.bar = tqdm(total=steps, initial=done_in_epoch, desc=f"epoch {epoch + 1}", leave=False,
                        dynamic_ncols=True, mininterval=1.0, bar_format="{desc} {percentage:3.0f}%|{bar:12}| "
                        "{n_fmt}/{total_fmt} {postfix}")

    def update(self) -> None:
        self.bar.update(1)

    def show(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self.bar.close()


class PlainProgress:
    """The same information as plain lines on stderr, at most one every PLAIN_EVERY seconds."""

    def __init__(self, epoch: int, steps_per_epoch: int, done_in_epoch: int, total: int):
        self.epoch, self.done = epoch, done_in_epoch
        self.steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
        self.last = time.monotonic()

    def update(self) -> None:
        self.done += 1

    def show(self, text: str) -> None:
        if time.monotonic() - self.last >= PLAIN_EVERY:
            self.last = time.monotonic()
            print(f"epoch {self.epoch + 1} step {self.done}/{self.steps} | {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def epoch_progress(epoch: int, steps_per_epoch: int, done_in_epoch: int, total: int) -> EpochBar | PlainProgress:
    """A bar on a terminal, plain periodic lines otherwise."""
    kind = EpochBar if sys.stderr.isatty() else PlainProgress
    return kind(epoch, steps_per_epoch, done_in_epoch, total)


def announce(message: str) -> None:
    """One line on stderr for a step that takes a while and has no bar (an evaluation, a report)."""
    print(message, file=sys.stderr, flush=True)
