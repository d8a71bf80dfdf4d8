"""Weight files: the reslab checkpoint format, which survives kill -9 — atomic writes, a checksum beside every file,
safe loading — and finding the checkpoint of a run directory.

Write: serialise to memory, write a temp file in the same folder, fsync, rename over the target, then write
the sha256 sidecar the same way. A crash at any moment leaves either the old pair or the new pair; a file
whose sidecar is missing or does not match is treated as bad, and resume falls back to the previous one.
Load: `torch.load(weights_only=True)` — a checkpoint is data, never code.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from reslab import ReslabError, layout

FORMAT = "reslab-checkpoint"
VERSION = 1
# What makes a folder a run directory: its config and its checkpoints (reslab.layout; reslab.engine.runs writes
# the rest).


class CheckpointError(ReslabError):
    pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def save_checkpoint(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **obj}, buf)
    data = buf.getvalue()
    try:
        atomic_write_bytes(path, data)
        atomic_write_text(sidecar(path), hashlib.sha256(data).hexdigest() + "\n")
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path} ({e.strerror or e}); earlier checkpoints are "
                              f"intact") from None


def load_checkpoint(path: Path, *, require_checksum: bool = False, map_location="cpu") -> dict:
    """Load a reslab checkpoint. The checksum is checked whenever a sidecar exists (always, for run
    checkpoints); a mismatch, truncation or a file that is not a reslab checkpoint is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    side = sidecar(path)
    if side.exists():
        want = side.read_text().strip()
        if hashlib.sha256(data).hexdigest() != want:
            raise CheckpointError(f"checkpoint {path} is corrupt or incomplete (sha256 differs from {side.name})")
    elif require_checksum:
        raise CheckpointError(f"checkpoint {path} has no checksum file {side.name} (its write did not finish)")
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
                              ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a reslab checkpoint (for akamaster weights use "
                              f"`reslab import akamaster {path} --out CKPT`)")
    return obj




def resumable_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Resumable checkpoints in a run, newest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := layout.CKPT_RE.fullmatch(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def newest_good_checkpoint(ckpt_dir: Path, log=print) -> tuple[Path, dict] | None:
    """The newest checkpoint that verifies; bad ones are reported and skipped (never deleted)."""
    for p in resumable_checkpoints(ckpt_dir):
        try:
            return p, load_checkpoint(p, require_checksum=True)
        except CheckpointError as e:
            log(f"warning: {e}; falling back to an older checkpoint")
    return None


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    for p in resumable_checkpoints(ckpt_dir)[keep:]:
        p.unlink(missing_ok=True)
        sidecar(p).unlink(missing_ok=True)


def load_weights(model: torch.nn.Module, state: dict, where: str | Path) -> None:
    """load_state_dict with a one-line error when the weights belong to another architecture."""
    state = strip_prefix(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(f"checkpoint {where} holds weights of a different model: {'; '.join(parts)}")
    model.load_state_dict(state)


def strip_prefix(state: dict, prefixes=("module.", "_orig_mod.")) -> dict:
    """Remove DataParallel/DDP (`module.`) and torch.compile (`_orig_mod.`) prefixes from state-dict keys."""
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out



def is_run_dir(path: Path) -> bool:
    return (Path(path) / layout.CONFIG_FILE).is_file() and (Path(path) / layout.CHECKPOINTS).is_dir()


def require_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ReslabError(f"run directory {path} does not exist")
    if not is_run_dir(path):
        raise ReslabError(f"{path} is not a reslab run (no {layout.CONFIG_FILE} and {layout.CHECKPOINTS}/ inside)")
    return path


def load_run_checkpoint(path: Path, which: str = "last") -> tuple[dict, Path]:
    """A checkpoint from a run directory ('last' = newest resumable, 'best' = best on validation) or a file."""
    path = Path(path)
    if path.is_file():
        return load_checkpoint(path), path
    run_dir = require_run_dir(path)
    if which == "best":
        p = layout.checkpoints_dir(run_dir) / layout.BEST_FILE
        if not p.exists():
            raise ReslabError(f"{run_dir} has no best.pt (no validation split, or no evaluation yet); "
                              f"use --weights last")
        return load_checkpoint(p, require_checksum=True), p
    found = newest_good_checkpoint(layout.checkpoints_dir(run_dir))
    if found is None:
        raise ReslabError(f"{run_dir} has no usable checkpoint")
    return found[1], found[0]
