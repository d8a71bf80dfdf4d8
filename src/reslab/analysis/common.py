"""What the response and gradient analyses share: loading models and data, naming, styles, safe output paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.config import Config, from_dict
from reslab.data import CifarData, Normalizer, load_dataset
from reslab.models import model_from_checkpoint
from reslab.models import model_info


@dataclass
class Loaded:
    """One set of weights ready to analyse."""

    label: str            # what the legend and the CSV call it (run name, or model name for a loose file)
    model_name: str
    group: str            # "plain" or "resnet"
    depth: int | None
    model: torch.nn.Module
    normalizer: Normalizer
    cfg: Config | None    # None for imported checkpoints (their training split is unknown)
    path: Path            # the checkpoint file
    iteration: int | None


def loaded_from_checkpoint(ckpt: dict, path: Path, label: str, device: torch.device) -> Loaded:
    model = model_from_checkpoint(ckpt, device, str(path))
    name = ckpt["model"]["name"]
    # The model object knows whether it has shortcuts; the name may be anything the registry accepts.
    group = "resnet" if getattr(model, "residual", True) else "plain"
    normalizer = Normalizer.from_state_dict(ckpt["normalization"]).to(device)
    return Loaded(label, name, group, model_info(name).depth, model, normalizer,
                  from_dict(ckpt["config"]) if ckpt.get("config") else None, Path(path), ckpt.get("iteration"))


def unique_labels(labels: list[str]) -> list[str]:
    """Make legend labels distinct (two seeds of one model, or two files of one model) by numbering repeats."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


class DataCache:
    """Each data set is loaded once per data directory, however many runs are analysed."""

    def __init__(self, override: str | None = None):
        if override is not None and not Path(override).exists():
            raise ReslabError(f"--data-dir {override} does not exist")
        self.override = override
        self._data: dict[tuple, CifarData] = {}

    def get(self, cfg: Config | None) -> CifarData:
        where = self.override if self.override is not None else (cfg.data.dir if cfg is not None else None)
        key = (cfg.data.dataset if cfg is not None else "cifar10", where)
        if key not in self._data:
            self._data[key] = load_dataset(*key)
        return self._data[key]


def check_positive(flag: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ReslabError(f"{flag} {value} is not allowed; use a positive number")


def fresh_paths(out_dir: Path, stem: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Paths `stem.<suffix>` in out_dir that do not exist yet; if any does, `stem-2`, `stem-3`, ... (one number
    for all suffixes, so a figure and its CSV keep the same name). Existing files are never overwritten. The
    folder is not created here: a command that fails later leaves nothing behind."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReslabError(f"--out {out_dir} is a file; give a directory")
    for i in range(1, 10_000):
        name = stem if i == 1 else f"{stem}-{i}"
        paths = {s: out_dir / f"{name}.{s}" for s in suffixes}
        if not any(p.exists() for p in paths.values()):
            return paths
    raise ReslabError(f"{out_dir} already holds 9999 {stem}-N files; choose another --out")
