"""The exporters behind `reslab export` (see reslab.export)."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from reslab import ReslabError, __version__
from reslab.data import NormalizeInput, Normalizer
from reslab.export.card import model_card
from reslab.models import model_from_weights
from reslab.models.fuse import fold_batchnorm
from reslab.weights import FOLDER_CONFIG, FOLDER_WEIGHTS, Pretrained, load_source, normalizer_to_json

FORMATS = ("onnx", "pt2", "safetensors", "folder")
SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors", "folder": ""}


def inference_graph(model: nn.Module) -> nn.Module:
    """[0, 1] images in, logits out: the normalisation, then the eval-mode net with BN folded."""
    return nn.Sequential(NormalizeInput(Normalizer.from_model(model)), fold_batchnorm(model.eval())).eval()


def export_model(source: str, fmt: str, out: str | Path) -> Path:
    """Write `source` as `fmt` to `out` (which must not exist); returns the path written."""
    if fmt not in FORMATS:
        raise ReslabError(f"--format {fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise ReslabError(f"{out} already exists; choose another --out (reslab never overwrites an export)")
    weights = load_source(source)
    model = model_from_weights(weights)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / (out.name or "export")
        WRITERS[fmt](model, weights, staged)
        staged.replace(out)  # whole or not at all
    return out


@contextlib.contextmanager
def quiet_exporter():
    """torch's exporters talk about things that do not concern a reslab net (torchvision ops, their own
    deprecations); keep the user's terminal to what reslab says."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def write_onnx(model: nn.Module, weights: Pretrained, path: Path) -> None:
    if importlib.util.find_spec("onnxscript") is None:  # torch's dynamo exporter needs it (and onnx)
        raise ReslabError("--format onnx needs the onnx and onnxscript packages: pip install -e \".[export]\"")
    x = torch.rand(2, 3, 32, 32)
    with quiet_exporter():
        prog = torch.onnx.export(inference_graph(model), (x,), dynamo=True, input_names=["images"],
                                 output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                 verbose=False)
    prog.save(str(path))


def write_pt2(model: nn.Module, weights: Pretrained, path: Path) -> None:
    x = torch.rand(2, 3, 32, 32)
    with quiet_exporter():
        ep = torch.export.export(inference_graph(model), (x,),
                                 dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(ep, str(path))


def folder_config(model: nn.Module, weights: Pretrained) -> dict:
    return {"model": weights.model, "kwargs": weights.kwargs, "normalization": normalizer_to_json(model.normalizer),
            "pad_fill": weights.pad_fill,
            "input": "normalised images (N, 3, 32, 32); normalize_input=True takes [0, 1] images",
            "reslab_version": __version__, "origin": weights.origin, "library": "reslab"}


def write_safetensors(model: nn.Module, weights: Pretrained, path: Path) -> None:
    try:
        from safetensors.torch import save_file  # optional: pip install -e ".[export]"
    except ImportError:
        raise ReslabError("--format safetensors/folder needs the safetensors package: "
                          "pip install -e \".[export]\"") from None
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"reslab": json.dumps(folder_config(model, weights))})


def write_folder(model: nn.Module, weights: Pretrained, path: Path) -> None:
    path.mkdir()
    write_safetensors(model, weights, path / FOLDER_WEIGHTS)
    (path / FOLDER_CONFIG).write_text(json.dumps(folder_config(model, weights), indent=2) + "\n")
    (path / "README.md").write_text(model_card(model, weights))


def save_pretrained(source: str, out: str | Path) -> Path:
    """The folder export (config.json + model.safetensors + README.md) of a run directory, a checkpoint or a
    published model name; `reslab.models.from_pretrained(out)` loads it back."""
    return export_model(source, "folder", out)


WRITERS = {"onnx": write_onnx, "pt2": write_pt2, "safetensors": write_safetensors, "folder": write_folder}
