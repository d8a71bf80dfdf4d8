"""A model from a config: the one place that turns `cfg.model` into `create_model` keyword arguments.

Those keyword arguments are also stored in every checkpoint (`ckpt["model"]["kwargs"]`), so a checkpoint rebuilds
its model without the config. `cfg` is a `reslab.config.Config` (read by attribute; models sit below config).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from reslab.data import DATASETS, Normalizer
from reslab.models.factory import create_model
from reslab.weights.files import load_weights


def model_kwargs(cfg) -> dict:
    """The keyword arguments `create_model` gets for this config."""
    kw = {"shortcut": cfg.model.shortcut}
    classes = DATASETS[cfg.data.dataset].num_classes
    if classes != 10:  # CIFAR-10 configs keep the kwargs they always had
        kw["num_classes"] = classes
    if cfg.model.zero_init_residual:
        kw["zero_init_residual"] = True
    for key in ("stem", "width"):  # ImageNet-style nets only; unset (null) keeps every older config's kwargs
        if getattr(cfg.model, key) is not None:
            kw[key] = getattr(cfg.model, key)
    return kw


def model_from_config(cfg) -> nn.Module:
    return create_model(cfg.model.name, **model_kwargs(cfg))


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu", where: str = "") -> torch.nn.Module:
    """The network a checkpoint holds, rebuilt from its model name and kwargs, with its weights loaded and its
    normalisation attached (`model.normalizer`, as `create_model(..., pretrained=...)` does)."""
    spec = ckpt["model"]
    model = create_model(spec["name"], **spec.get("kwargs", {}))
    load_weights(model, ckpt["model_state"], where or spec["name"])
    model.normalizer = Normalizer.from_state_dict(ckpt["normalization"])
    return model.to(device)
