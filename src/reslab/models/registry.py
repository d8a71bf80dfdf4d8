"""Model registry: every network is built by name, so the CLI and configs never import a class.

Builders register themselves with `@register_model`. Families whose depth is part of the name (the CIFAR
6n+2 nets) also register a *resolver*, which turns a name such as `resnet74` into a builder call.
"""
from __future__ import annotations

import re
from typing import Callable

import torch.nn as nn

from reslab import ReslabError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# (pattern, resolver) pairs: resolver(match) -> (builder, kwargs) or raises ReslabError.
_RESOLVERS: list[tuple[re.Pattern, Callable]] = []


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Decorator: register `fn` under `name` (default: the function's name)."""

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} registered twice")
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def register_resolver(pattern: str, resolver: Callable) -> None:
    _RESOLVERS.append((re.compile(pattern), resolver))


def list_models() -> list[str]:
    """Names of every registered model (the pattern families are listed by their paper depths)."""
    _import_families()
    return sorted(_MODELS, key=_sort_key)


def _sort_key(name: str):
    m = re.match(r"([a-z_]+?)(\d+)(.*)$", name)
    return (m.group(1), int(m.group(2)), m.group(3)) if m else (name, 0, "")


def model_exists(name: str) -> bool:
    try:
        _resolve(name)
        return True
    except ReslabError:
        return False


def _resolve(name: str):
    _import_families()
    if name in _MODELS:
        return _MODELS[name], {}
    for pattern, resolver in _RESOLVERS:
        m = pattern.fullmatch(name)
        if m:
            return resolver(m)
    examples = ", ".join(list_models()[:8])
    raise ReslabError(f"unknown model {name!r}; allowed: {examples}, ... (see `reslab models`), "
                      f"or resnetN/plainN for any CIFAR depth N = 6n+2")


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name, e.g. `create_model("plain56", shortcut="A")`."""
    builder, fixed = _resolve(name)
    try:
        return builder(**{**fixed, **kwargs})
    except TypeError as e:
        raise ReslabError(f"model {name!r}: {e}") from None


def _import_families() -> None:
    # Importing a family module runs its @register_model decorators.
    from reslab.models import cifar  # noqa: F401
    from reslab.models import imagenet, multiscale  # noqa: F401
