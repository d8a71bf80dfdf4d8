"""What a person watching a run sees while it trains: the per-epoch bar, and the one throughput estimator.

`rate` is the single place images per second are computed (the bar and the metrics rows use it); an ETA or a study-wide progress line belongs
here too, built on it.
"""
from __future__ import annotations

from tqdm import tqdm


def rate(images: int | float, seconds: float) -> float:
    """Images per second over `seconds` of training."""
    return images / max(seconds, 1e-9)


class EpochBar:
    """A tqdm bar over the steps of one epoch (stderr), with loss, error, lr and img/s after it."""

    def __init__(self, epoch: int, steps_per_epoch: int, done_in_epoch: int, total: int):
        steps = min(steps_per_epoch, total - epoch * steps_per_epoch)
        self.bar = tqdm(total=steps, initial=done_in_epoch, desc=f"epoch {epoch + 1}", leave=False,
                        dynamic_ncols=True, mininterval=1.0)

    def update(self) -> None:
        self.bar.update(1)

    def show(self, loss: float, error_pct: float, lr: float, images_per_s: float) -> None:
        self.bar.set_postfix_str(f"loss {loss:.3f} err {error_pct:.1f}% lr {lr:.4g} {images_per_s:.0f} img/s")

    def close(self) -> None:
        self.bar.close()
