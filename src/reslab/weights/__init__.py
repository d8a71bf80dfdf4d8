"""Weights in: the reslab checkpoint format (`files`), published weights by name (`published`, `store`), other
projects' state dicts (`convert`), and `load_pretrained`, which turns any of them into what `create_model` needs.

`pretrained` may be True (the default published source for the model), a source name ("akamaster"), a reslab
checkpoint file, a run directory (its newest good checkpoint), an exported folder (config.json +
model.safetensors) or an exported .safetensors file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.data import Normalizer
from reslab.weights.convert import CONVERTERS
from reslab.weights.files import load_checkpoint, load_run_checkpoint
from reslab.weights.table import PUBLISHED, Published, by_filename, published, sources
from reslab.weights.store import fetch

FOLDER_CONFIG, FOLDER_WEIGHTS = "config.json", "model.safetensors"


@dataclass
class Pretrained:
    model: str                  # the model these weights belong to
    kwargs: dict                # create_model keyword arguments they need (shortcut, num_classes, ...)
    state: dict                 # a reslab state dict
    normalizer: Normalizer      # the input normalisation they were trained with
    origin: dict = field(default_factory=dict)  # where they came from (recorded by runs and model cards)
    pad_fill: str | None = None  # how their training augmentation padded (data.pad_fill), where known


def load_pretrained(model: str, pretrained) -> Pretrained:
    """Resolve `pretrained` (see the module docstring) for `model`."""
    if pretrained is True or (isinstance(pretrained, str) and pretrained in sources()):
        return load_published(published(model, None if pretrained is True else pretrained))
    path = Path(pretrained)
    if not path.exists():
        raise ReslabError(f"pretrained={str(pretrained)!r} is neither a published source "
                          f"({', '.join(sorted(sources()))}) nor an existing checkpoint file, run directory or "
                          f"exported folder")
    return load_path(path)


def published_entry(source: str) -> Published | None:
    """The published weights `source` names — `NAME` (its default source) or `NAME@SOURCE`, e.g. resnet20@reslab —
    or None when it names none (an existing path of that name comes first). An unknown SOURCE is one line."""
    if Path(source).exists():
        return None
    name, at, origin = source.partition("@")
    if not any(m == name for m, _ in PUBLISHED):
        return None
    return published(name, origin if at else None)


def unknown_source(source: str, paths: str) -> ReslabError:
    """The one line for a source that is neither an existing path (`paths` says which kinds) nor a published name."""
    return ReslabError(f"{source!r} is neither an existing {paths} nor a model with published weights "
                       f"({', '.join(sorted({m for m, _ in PUBLISHED}))}; NAME@SOURCE picks a source)")


def load_source(source: str) -> Pretrained:
    """What `--init-from` and `reslab export` take: a run directory, a checkpoint file, an exported folder or file,
    or the name of a model with published weights."""
    entry = published_entry(source)
    if entry is not None:
        return load_published(entry)
    if Path(source).exists():
        return load_path(Path(source))
    raise unknown_source(source, "run directory, checkpoint file or exported folder")


def load_checkpoint_source(source: str, which: str = "last") -> tuple[dict, Path]:
    """What `reslab eval` takes, as a reslab checkpoint and the file it was read from: a run directory (`which`:
    its last or best weights), a checkpoint file, or the name of a model with published weights (a checkpoint of
    kind "published", with no training config)."""
    entry = published_entry(source)
    if entry is not None:
        return published_checkpoint(load_published(entry)), fetch(entry)
    if not Path(source).exists():
        raise unknown_source(source, "run directory or checkpoint file")
    return load_run_checkpoint(Path(source), which)


def published_checkpoint(w: Pretrained) -> dict:
    """Published weights in the checkpoint layout `reslab import` writes (no training config, so no val split)."""
    return {"kind": "published", "model": {"name": w.model, "kwargs": dict(w.kwargs)}, "model_state": w.state,
            "normalization": w.normalizer.state_dict(), "config": None, "source": dict(w.origin)}


def load_path(path: Path) -> Pretrained:
    """The weights in a checkpoint file, a run directory (its newest good checkpoint) or an export."""
    if path.is_dir() and (path / FOLDER_CONFIG).is_file():
        return load_safetensors(path / FOLDER_WEIGHTS, json.loads((path / FOLDER_CONFIG).read_text()))
    if path.suffix == ".safetensors":
        return load_safetensors(path, None)
    ckpt, ckpt_path = load_run_checkpoint(path, "last")
    return Pretrained(ckpt["model"]["name"], dict(ckpt["model"].get("kwargs", {})), ckpt["model_state"],
                      Normalizer.from_state_dict(ckpt["normalization"]),
                      {"kind": "checkpoint", "path": str(ckpt_path), "iteration": ckpt.get("iteration"),
                       **({"source": ckpt["source"]} if ckpt.get("source") else {})}, checkpoint_pad_fill(ckpt))


def checkpoint_pad_fill(ckpt: dict) -> str | None:
    """How the weights of a checkpoint were augmented: its run's data.pad_fill (runs from before the key existed
    padded with the mean), or, for imported files reslab knows, the published convention."""
    if ckpt.get("config"):
        return ckpt["config"]["data"].get("pad_fill", "mean")
    entry = by_filename((ckpt.get("source") or {}).get("file", ""))
    return entry.pad_fill if entry else None


def load_published(p: Published) -> Pretrained:
    path = fetch(p)
    origin = {"kind": "published", "source": p.source, "project": p.project, "file": p.filename,
              "url": p.url, "sha256": p.sha256, "licence": p.licence, "published_test_error": p.test_error}
    if p.converter == "reslab":  # a slim reslab checkpoint: its own model kwargs and normalisation inside
        ckpt = load_checkpoint(path)
        return Pretrained(p.model, dict(ckpt["model"].get("kwargs", {})), ckpt["model_state"],
                          Normalizer.from_state_dict(ckpt["normalization"]), origin, checkpoint_pad_fill(ckpt))
    raw = torch.load(path, map_location="cpu", weights_only=True)  # a weight file is data, never code
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ReslabError(f"{path} holds no state dict")
    _, converted = CONVERTERS[p.converter](state)
    n = p.normalization
    norm = Normalizer(n["kind"], torch.tensor(n["mean"]), torch.tensor(n["std"]), note=n["note"])
    return Pretrained(p.model, dict(p.kwargs), converted, norm, origin, p.pad_fill)


def normalizer_to_json(n: Normalizer) -> dict:
    return {"kind": n.kind, "note": n.note, "mean": None if n.mean is None else n.mean.tolist(),
            "std": None if n.std is None else n.std.tolist()}


def normalizer_from_json(d: dict) -> Normalizer:
    t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return Normalizer(d["kind"], t(d.get("mean")), t(d.get("std")), d.get("note", ""))


def load_safetensors(path: Path, config: dict | None) -> Pretrained:
    """An exported model: a .safetensors file whose metadata (or the folder's config.json) names the model."""
    try:
        from safetensors import safe_open  # optional: pip install -e ".[export]"
    except ImportError:
        raise ReslabError(f"{path} is a safetensors file; reading it needs the safetensors package "
                          f"(pip install -e \".[export]\")") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except Exception as e:
        raise ReslabError(f"{path} cannot be read as safetensors ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        config = config or json.loads(meta["reslab"])
        return Pretrained(config["model"], dict(config.get("kwargs", {})), state,
                          normalizer_from_json(config["normalization"]),
                          {"kind": "exported", "path": str(path), **config.get("origin", {})}, config.get("pad_fill"))
    except (KeyError, ValueError, TypeError) as e:
        raise ReslabError(f"{path} is not a reslab export (its config lacks {e})") from None
