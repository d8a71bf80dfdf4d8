"""`create_model(name, pretrained=...)`: a registered network by name, with weights and their normalisation.

What "normalisation attached" means: a model built with `pretrained=` takes *normalised* input, exactly like one
built without, and carries the normalisation its weights were trained with as `model.normalizer` (a
`reslab.data.Normalizer`; `Normalizer.from_model(model)` reads it). `reslab eval`, the trainer and the exports
use it, so nobody has to remember ImageNet statistics. With `normalize_input=True` you get instead
`nn.Sequential(NormalizeInput, model)`, which takes float images in [0, 1] (N, 3, 32, 32).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from reslab import ReslabError
from reslab.data import NormalizeInput
from reslab.models.registry import ModelInfo, model_info
from reslab.weights import FOLDER_CONFIG, Pretrained, load_pretrained
from reslab.weights.files import load_weights


def create_model(name: str, *, pretrained=None, normalize_input: bool = False, **kwargs) -> nn.Module:
    """Build a registered model by name, e.g. `create_model("plain56", shortcut="A")`.

    pretrained   None/False: fresh initialisation. True or "akamaster": published weights (downloaded once,
                 sha256-checked every load). A checkpoint file, a run directory or an exported folder: those weights.
    normalize_input  return nn.Sequential(NormalizeInput, model): takes images in [0, 1] (needs `pretrained`).
    """
    info = model_info(name)
    if pretrained in (None, False):
        if normalize_input:
            raise ReslabError("normalize_input=True needs pretrained weights (their normalisation is what it applies)")
        return build(info, kwargs)
    weights = load_pretrained(name, pretrained)
    if not model_info(weights.model).same_architecture(info):
        raise ReslabError(f"pretrained={str(pretrained)!r} holds weights of {weights.model}, not {name}; "
                          f"ask for {weights.model} or pass other weights")
    return model_from_weights(weights, normalize_input=normalize_input, where=f"pretrained={str(pretrained)!r}",
                              **kwargs)


def model_from_weights(weights: Pretrained, *, normalize_input: bool = False, where: str = "", **kwargs) -> nn.Module:
    """The network `weights` belong to, with them loaded and their normalisation attached (see the module
    docstring)."""
    model = build(model_info(weights.model), {**weights.kwargs, **kwargs})
    load_weights(model, weights.state, where or weights.model)
    model.normalizer = weights.normalizer
    model.pretrained_origin = weights.origin
    return nn.Sequential(NormalizeInput(weights.normalizer), model) if normalize_input else model


def build(info: ModelInfo, kwargs: dict) -> nn.Module:
    try:
        return info.builder(**kwargs)
    except TypeError as e:
        raise ReslabError(f"model {info.name!r}: {e}") from None


def from_pretrained(folder, **kwargs) -> nn.Module:
    """The model of an exported folder (config.json + model.safetensors), e.g. from `reslab export --format folder`."""
    path = Path(folder)
    if not (path / FOLDER_CONFIG).is_file():
        raise ReslabError(f"{folder} is not an exported reslab folder (no {FOLDER_CONFIG})")
    return create_model(json.loads((path / FOLDER_CONFIG).read_text())["model"], pretrained=path, **kwargs)
