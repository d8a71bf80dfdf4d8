"""The ImageNet-style ResNets (He et al. 2016, Table 1) and their plain twins, built for CIFAR by default.

    resnet18, resnet34              basic blocks, (2, 2, 2, 2) / (3, 4, 6, 3)
    resnet50, resnet101, resnet152  bottleneck blocks, (3, 4, 6, 3) / (3, 4, 23, 3) / (3, 8, 36, 3)
    plain18 ... plain152            the same nets with the shortcuts switched off (nothing else changes)

All go through the one `ResNet` class (models/resnet.py); only the block type and the blocks per stage differ.

Keyword arguments (every builder):
  num_classes          classifier outputs (default 10)
  stem                 "cifar" (default): 3x3 conv, stride 1, no max-pool, the usual CIFAR adaptation, so a
                       32x32 image reaches the last stage at 4x4; "imagenet": 7x7 stride-2 conv + 3x3 stride-2
                       max-pool, the original (a 224x224 image reaches the last stage at 7x7)
  shortcut             "A" (default), "B" or "C". The default is A (zero-padding identity, no parameters) so
                       plainN and resnetN have exactly the same parameters — the paper's choice for its
                       plain-vs-residual comparison (Table 2). **torchvision builds option B** (1x1 projection
                       where the shape changes); pass shortcut="B" for torchvision's architecture.
  zero_init_residual   zero the last BN gamma of every residual branch (off by default)
  width                planes of the first stage (default 64); the stages are width x (1, 2, 4, 8). A smaller
                       width (e.g. 16) keeps the depth and the topology but cuts the cost ~(64/width)^2 times,
                       for CPU profiles.

With stem="imagenet", num_classes=1000, shortcut="B" the parameter counts equal torchvision's exactly
(11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808) and a torchvision state dict loads with one
key rename (see reslab.importers.torchvision).

Option A with bottlenecks: where a block widens the channels (64 -> 256 in the first block of stage 1, at
stride 1) the identity is zero-padded to the new width, exactly as between stages.
"""
from __future__ import annotations

from reslab import ReslabError
from reslab.models.registry import register_model
from reslab.models.resnet import SHORTCUTS, STEMS, BasicBlock, Bottleneck, ResNet

ARCHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
DEFAULT_WIDTH = 64
FAMILY = "imagenet-style"            # this family and the multi-scale ResNet-18 (reslab.models.multiscale)
OPTIONS = ("stem", "width")          # what these builders take beyond the common keyword arguments


def check_family_kwargs(name: str, stem: str, shortcut: str, width: int) -> None:
    """One-line ReslabErrors for the arguments ResNet itself would reject with a ValueError."""
    if stem not in STEMS:
        raise ReslabError(f"model {name}: stem={stem!r} is not allowed; allowed: {', '.join(STEMS)}")
    if shortcut not in SHORTCUTS:
        raise ReslabError(f"model {name}: shortcut={shortcut!r} is not allowed; allowed: {', '.join(SHORTCUTS)}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ReslabError(f"model {name}: width={width!r} is not allowed; a positive integer (default 64)")


def stage_widths(width: int) -> tuple[int, int, int, int]:
    return (width, 2 * width, 4 * width, 8 * width)


def imagenet_resnet(depth: int, *, residual: bool = True, num_classes: int = 10, stem: str = "cifar",
                    shortcut: str = "A", zero_init_residual: bool = False, width: int = DEFAULT_WIDTH) -> ResNet:
    """ResNet-`depth` of Table 1 (18, 34, 50, 101, 152), or its plain twin with residual=False."""
    if depth not in ARCHS:
        raise ReslabError(f"ImageNet-style depth {depth} is not allowed; allowed: {', '.join(map(str, ARCHS))}")
    name = f"{'resnet' if residual else 'plain'}{depth}"
    check_family_kwargs(name, stem, shortcut, width)
    block, layers = ARCHS[depth]
    return ResNet(block, layers, stage_widths(width), num_classes=num_classes, stem=stem, stem_width=width,
                  residual=residual, shortcut=shortcut, zero_init_residual=zero_init_residual)


def macs_at_224(model: ResNet, macs_32: int) -> int:
    """MACs of `model`'s architecture with stem="imagenet" on one 224x224 image, from the CIFAR-stem model and its
    `count_macs` at 32x32 — exact, without building or running the second net (`reslab models` stays fast).

    Why it is exact: after the ImageNet stem (7x7/2 conv to 112x112, 3x3/2 max-pool) the stages run at
    56, 28, 14, 7 pixels; after the CIFAR stem at 32, 16, 8, 4. Every conv after the stem therefore has
    (56/32)^2 = 49/16 times the output positions and the same kernel, so its MACs scale by 49/16; only the stem
    conv differs, and the classifier is unchanged. tests/test_imagenet_style.py checks this against a forward
    pass at 224x224.
    """
    c = model.conv1
    if c.kernel_size != (3, 3) or c.stride != (1, 1):
        raise ValueError("macs_at_224 expects the CIFAR-stem model (stem='cifar')")
    stem_32 = c.in_channels * 9 * c.out_channels * 32 * 32
    fc = model.fc.in_features * model.fc.out_features
    body = macs_32 - stem_32 - fc
    assert body * 49 % 16 == 0, "stage resolutions are not 32/16/8/4"
    return c.in_channels * 49 * c.out_channels * 112 * 112 + body * 49 // 16 + fc


def _make_builder(depth: int, residual: bool):
    def build(*, num_classes: int = 10, stem: str = "cifar", shortcut: str = "A", zero_init_residual: bool = False,
              width: int = DEFAULT_WIDTH):
        return imagenet_resnet(depth, residual=residual, num_classes=num_classes, stem=stem, shortcut=shortcut,
                               zero_init_residual=zero_init_residual, width=width)

    block = "basic" if ARCHS[depth][0] is BasicBlock else "bottleneck"
    kind = "ResNet" if residual else "plain net (no shortcuts)"
    build.__doc__ = f"ImageNet-style {kind}-{depth}, {block} blocks {ARCHS[depth][1]} (He et al. 2016, Table 1)."
    return build


for _d in ARCHS:
    for _residual in (True, False):
        _name = f"{'resnet' if _residual else 'plain'}{_d}"
        register_model(_make_builder(_d, _residual), name=_name, family=FAMILY, depth=_d, residual=_residual,
                       options=OPTIONS)
