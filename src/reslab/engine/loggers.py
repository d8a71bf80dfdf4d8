"""Where a run's numbers go besides its CSV files: experiment trackers (TensorBoard today).

A tracker is a `Logger`; `open_loggers` opens the ones a config asks for, on rank 0 only. `Loggers` fans every
metrics row out to them, and a tracker that fails is switched off for the rest of the run with one warning —
a run never fails because a tracker did. To add one (W&B, MLflow ...): subclass `Logger`, open it in
`open_loggers`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

ROW_KEYS = ("train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error", "lr", "images_per_s")


class Logger:
    name = "logger"

    def log_row(self, row: dict, step: int) -> None:
        """One metrics row (an evaluation) at iteration `step`."""

    def close(self) -> None:
        pass


class TensorBoardLogger(Logger):
    name = "tensorboard"

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # optional: needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log_row(self, row: dict, step: int) -> None:
        for key in ROW_KEYS:
            if row.get(key) is not None:
                self.writer.add_scalar(key, row[key], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Loggers:
    """Every open tracker; one that raises is closed and dropped, with a warning through `warn`."""

    def __init__(self, loggers: list[Logger], warn: Callable[[str], None]):
        self.loggers, self.warn = list(loggers), warn

    def log_row(self, row: dict, step: int) -> None:
        for lg in list(self.loggers):
            try:
                lg.log_row(row, step)
            except Exception as e:  # a tracker never stops training
                self.loggers.remove(lg)
                self.warn(f"warning: {lg.name} logging failed ({type(e).__name__}: {e}); it is off for the rest "
                          f"of this run (metrics.csv has every row)")

    def close(self) -> None:
        for lg in self.loggers:
            try:
                lg.close()
            except Exception:
                pass
        self.loggers = []


def open_loggers(cfg, run_dir: Path, main: bool, warn: Callable[[str], None]) -> Loggers:
    """The trackers `cfg.log` asks for (rank 0 only). TensorBoard is used when its package is installed and
    skipped silently otherwise (the report never needs it)."""
    loggers: list[Logger] = []
    if main and cfg.log.tensorboard:
        try:
            loggers.append(TensorBoardLogger(run_dir))
        except Exception:
            pass
    return Loggers(loggers, warn)
