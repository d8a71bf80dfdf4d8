"""Run directories: one new folder per run, never reused; what goes in it and how it is written."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from reslab import ReslabError, __version__, layout
from reslab.weights.files import atomic_write_text

METRIC_FIELDS = ("epoch", "iteration", "train_loss", "train_error", "val_loss", "val_error", "test_loss",
                 "test_error", "lr", "seconds", "images_per_s", "wall_seconds")
# the dense training curve: the running training loss/error over each window of train.log_every iterations
TRAIN_LOG_FIELDS = ("iteration", "train_loss", "train_error", "lr")


def new_run_dir(runs_dir: Path, name: str, exact: str | None = None) -> Path:
    """runs_dir/<name>-<timestamp>, with -2, -3 ... appended if that exists: a run never reuses a folder.
    With `exact`, runs_dir/<exact>, which must not exist yet."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReslabError(f"--runs-dir {runs_dir} cannot be created ({e.strerror or e})") from None
    if exact:
        path = runs_dir / exact
        try:
            path.mkdir()
        except FileExistsError:
            raise ReslabError(f"run directory {path} already exists; resume it with --resume or pick another name")
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        path = runs_dir / (f"{name}-{stamp}" + (f"-{i}" if i > 1 else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise ReslabError(f"cannot create a run directory in {runs_dir} ({e.strerror or e})") from None
    raise ReslabError(f"could not create a new run directory in {runs_dir}")


def study_of(run_dir: Path) -> Path | None:
    """The study directory a run belongs to (STUDY/runs/<name>), or None for a run of its own."""
    study = Path(run_dir).resolve().parent.parent
    in_study = Path(run_dir).resolve().parent.name == layout.STUDY_RUNS and (study / layout.STUDY_FILE).is_file()
    return study if in_study else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device, seed: int) -> dict:
    env = {"reslab": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
           "platform": platform.platform(), "machine": platform.machine(), "device": str(device),
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "seed": seed,
           "git_commit": git_commit(), "command": " ".join(sys.argv), "started": datetime.now().isoformat()}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def write_metrics(path: Path, rows: list[dict], fields=METRIC_FIELDS) -> None:
    """The whole CSV is rewritten atomically from the rows held in memory (and in every checkpoint), so a
    resumed run's metrics.csv (or train_log.csv, with TRAIN_LOG_FIELDS) holds exactly the rows of its checkpoint
    — no duplicates, no gaps."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else _fmt(r.get(k))) for k in fields})
    atomic_write_text(path, buf.getvalue())


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (None if v == "" else (int(v) if k in ("epoch", "iteration") else float(v)))
                    for k, v in r.items()})
    return out


class RunLog:
    """Prints a line and appends it to the run's train.log."""

    def __init__(self, run_dir: Path | None, quiet: bool = False):
        self.path = Path(run_dir) / layout.LOG_FILE if run_dir else None
        self.quiet = quiet

    def __call__(self, msg: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(msg, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")

