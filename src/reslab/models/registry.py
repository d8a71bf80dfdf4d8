"""Model registry: every network is built by name (reslab.models.factory.create_model), so the CLI and configs
never import a class.

The registry owns each model's metadata (`ModelInfo`: family, depth, residual or plain, the options its builder
takes beyond the common ones) and never imports a family: a family module registers its builders with
`@register_model(...)` when it is imported, and `reslab.models` imports every family (as timm does). Families
whose depth is part of the name (the CIFAR 6n+2 nets) also register a *pattern*, which turns a name such as
`resnet74` into a `ModelInfo` on demand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from reslab import ReslabError

# Keyword arguments every builder takes; `ModelInfo.options` lists the others.
COMMON_KWARGS = ("num_classes", "shortcut", "zero_init_residual")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    family: str = "custom"          # "cifar" (the paper's 6n+2 nets) | "imagenet-style" | ...
    depth: int | None = None        # the depth the name stands for (resnet56 -> 56, resnet18_ms -> 18)
    residual: bool = True           # False: the plain twin (same class, shortcuts off)
    options: tuple[str, ...] = ()   # keyword arguments beyond COMMON_KWARGS (e.g. stem, width)

    def accepts(self, option: str) -> bool:
        return option in COMMON_KWARGS or option in self.options

    def same_architecture(self, other: "ModelInfo") -> bool:
        """Whether weights of one load into the other (resnet50 and cifar_resnet50 do not; resnet56 and
        cifar_resnet56 do)."""
        return (self.family, self.depth, self.residual) == (other.family, other.depth, other.residual)


_MODELS: dict[str, ModelInfo] = {}
# (pattern, resolver) pairs: resolver(match) -> ModelInfo, or raises ReslabError.
_PATTERNS: list[tuple[re.Pattern, Callable[[re.Match], ModelInfo]]] = []


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None, family: str = "custom",
                   depth: int | None = None, residual: bool = True, options: tuple[str, ...] = ()):
    """Decorator (or call): register builder `fn` under `name` (default: the function's name) with its metadata."""

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} registered twice")
        _MODELS[key] = ModelInfo(key, f, family, depth, residual, tuple(options))
        return f

    return wrap(fn) if fn is not None else wrap


def register_pattern(pattern: str, resolver: Callable[[re.Match], ModelInfo]) -> None:
    _PATTERNS.append((re.compile(pattern), resolver))


def list_models(family: str | None = None) -> list[str]:
    """Names of every registered model (the pattern families are listed by their paper depths), sorted."""
    return sorted((n for n, i in _MODELS.items() if family is None or i.family == family), key=_sort_key)


def family_members(family: str) -> list[str]:
    """The registered names of one family, in registration order."""
    return [n for n, i in _MODELS.items() if i.family == family]


def _sort_key(name: str):
    m = re.match(r"([a-z_]+?)(\d+)(.*)$", name)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else (name, 0, "")


def model_exists(name: str) -> bool:
    try:
        model_info(name)
        return True
    except ReslabError:
        return False


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered (or pattern-resolved) model; a one-line ReslabError for an unknown name."""
    if name in _MODELS:
        return _MODELS[name]
    for pattern, resolver in _PATTERNS:
        m = pattern.fullmatch(name)
        if m:
            return resolver(m)
    examples = ", ".join(list_models()[:8])
    raise ReslabError(f"unknown model {name!r}; allowed: {examples}, ... (see `reslab models`), "
                      f"or resnetN/plainN for any CIFAR depth N = 6n+2")
