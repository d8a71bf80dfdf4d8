"""The paper's CIFAR-10 networks (Sec. 4.2): depth 6n+2, filters 16/32/64, 10-way classifier.

`resnetN` and `plainN` exist for every N = 6n+2 (resnet20, plain56, resnet1202, plain74, ...). The paper's
depths are registered by name; any other 6n+2 depth resolves by pattern. Depths 50 and 152 are also 6n+2, but
those names belong to the ImageNet-style bottleneck nets; the CIFAR ones are `cifar_resnet50` / `cifar_plain50`
(every CIFAR net also answers to its `cifar_` name).
"""
from __future__ import annotations

from reslab import ReslabError
from reslab.models.registry import ModelInfo, register_model, register_pattern
from reslab.models.resnet import SHORTCUTS, BasicBlock, ResNet

PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)
# Names the ImageNet-style family owns; their CIFAR 6n+2 twins keep the cifar_ prefix.
RESERVED_DEPTHS = (50, 152)
TWIN_NAMES = tuple(f"cifar_{kind}{d}" for d in RESERVED_DEPTHS for kind in ("resnet", "plain"))  # for listings


def cifar_depth_to_n(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ReslabError(f"CIFAR depth {depth} is not 6n+2 with n >= 1; allowed: 8, 14, 20, 26, 32, 38, 44, 50, 56, "
                          f"..., 110, ..., 1202")
    return (depth - 2) // 6


def cifar_resnet(depth: int, *, residual: bool = True, shortcut: str = "A", num_classes: int = 10,
                 zero_init_residual: bool = False, widths=(16, 32, 64)) -> ResNet:
    """CIFAR ResNet (or plain net with residual=False) of depth 6n+2."""
    n = cifar_depth_to_n(depth)
    if shortcut not in SHORTCUTS:
        raise ReslabError(f"model {'resnet' if residual else 'plain'}{depth}: shortcut={shortcut!r} is not allowed; "
                          f"allowed: {', '.join(SHORTCUTS)}")
    return ResNet(BasicBlock, (n, n, n), tuple(widths), num_classes=num_classes, stem="cifar",
                  residual=residual, shortcut=shortcut, zero_init_residual=zero_init_residual)


def _make_builder(depth: int, residual: bool):
    def build(**kw):
        return cifar_resnet(depth, residual=residual, **kw)

    kind = "ResNet" if residual else "plain net"
    build.__doc__ = f"CIFAR {kind}, depth {depth} (n={(depth - 2) // 6})."
    return build


FAMILY = "cifar"
OPTIONS = ("widths",)  # what these builders take beyond the common keyword arguments


for _d in PAPER_DEPTHS:
    for _residual in (True, False):
        register_model(_make_builder(_d, _residual), name=f"{'resnet' if _residual else 'plain'}{_d}", family=FAMILY,
                       depth=_d, residual=_residual, options=OPTIONS)


def resolve_name(m) -> ModelInfo:
    """resnetN / plainN / cifar_resnetN / cifar_plainN for any 6n+2 depth N."""
    prefix, kind, depth = m.group(1), m.group(2), int(m.group(3))
    if not prefix and depth in RESERVED_DEPTHS:
        raise ReslabError(f"model {kind}{depth!s}: that name belongs to the ImageNet-style family; "
                          f"use cifar_{kind}{depth} for the CIFAR 6n+2 net")
    cifar_depth_to_n(depth)  # raises a clear error for non-6n+2 depths
    return ModelInfo(m.group(0), _make_builder(depth, kind == "resnet"), FAMILY, depth, kind == "resnet", OPTIONS)


register_pattern(r"(cifar_)?(resnet|plain)(\d+)", resolve_name)
