"""One BasicBlock, one Bottleneck, one ResNet — for residual *and* plain networks.

A plain network is the same class with `residual=False`: the shortcut is simply not built and not added, and
nothing else changes (same layers, same initialisation, same parameter count under option A). So a
plain-vs-residual comparison differs in exactly one thing, which is the point of the paper's experiment.

Shortcut options (He et al. 2016, Sec. 3.3 and Table 3):
  A  identity; where the shape changes, subsample by 2 and zero-pad the new channels (no parameters).
  B  identity; where the shape changes, a 1x1 strided projection conv + BN.
  C  projection (1x1 conv + BN) on every block.

Zero-padding placement for option A: the extra channels are split evenly before and after the identity
channels (16 -> 32 puts the identity in channels 8..23). The paper does not say where the zeros go; this is
what the most used public reproduction does, and matching it is what lets its pretrained weights load and
reproduce their published test errors bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reslab.models.bn_act import bn_relu

SHORTCUTS = ("A", "B", "C")
STEMS = ("cifar", "imagenet")


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class PadShortcut(nn.Module):
    """Option A: parameter-free identity, subsampled and zero-padded where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad_before = (cout - cin) // 2
        self.pad_after = cout - cin - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # Bitwise the same as x[:, :, ::s, ::s] forward and backward, but its gradient keeps the input's
            # memory format: the slicing form hands back an NCHW gradient that is then added into a
            # channels_last one, which sends the add and the next ReLU/BN backward to slow mixed-format paths.
            x = F.avg_pool2d(x, 1, self.stride)
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


class _MeanPoolKeepFormat(torch.autograd.Function):
    """Global average pool whose gradient keeps the input's memory format. The forward is `mean((2, 3))`; the
    backward divides the broadcast gradient by H*W exactly as mean's own backward does, only into a tensor laid
    out like the input (mean's backward always returns NCHW)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.count = x.shape, x.shape[2] * x.shape[3]
        ctx.memory_format = memory_format_of(x)
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.memory_format)
        return torch.div(grad.expand(ctx.shape), ctx.count, out=out)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """torch.channels_last for a 4-D tensor laid out NHWC (and not also NCHW), else torch.contiguous_format."""
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


class GlobalAvgPool(nn.Module):
    """`nn.AdaptiveAvgPool2d(1)` with the same numbers; in training its gradient keeps the input's memory
    format (see _MeanPoolKeepFormat). Eval, export and no-grad use the plain mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and x.requires_grad:
            return _MeanPoolKeepFormat.apply(x)
        return x.mean((2, 3), keepdim=True)


def make_shortcut(cin: int, cout: int, stride: int, option: str) -> nn.Module:
    if option not in SHORTCUTS:
        raise ValueError(f"shortcut option {option!r} is not one of {', '.join(SHORTCUTS)}")
    shape_changes = stride != 1 or cin != cout
    if option == "C" or (option == "B" and shape_changes):
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    if option == "A" and shape_changes:
        return PadShortcut(cin, cout, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 2 left of the paper). `residual=False` makes it a plain two-layer block."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "A", residual: bool = True):
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        if residual:
            self.shortcut = make_shortcut(cin, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bn_relu(bn, t, skip) is relu(bn(t) + skip), fused in CPU training (models/bn_act.py).
        out = bn_relu(self.bn1, self.conv1(x))
        return bn_relu(self.bn2, self.conv2(out), self.shortcut(x) if self.residual else None)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (Fig. 5 right). Stride sits on the 3x3 conv, as in torchvision."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B", residual: bool = True):
        super().__init__()
        self.residual = residual
        width = planes
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        if residual:
            self.shortcut = make_shortcut(cin, cout, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = bn_relu(self.bn1, self.conv1(x))
        out = bn_relu(self.bn2, self.conv2(out))
        return bn_relu(self.bn3, self.conv3(out), self.shortcut(x) if self.residual else None)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class ResNet(nn.Module):
    """Stem, stages of blocks, global average pool, linear classifier.

    block       BasicBlock or Bottleneck (or any block with the same constructor)
    layers      blocks per stage, e.g. (3, 3, 3) for the CIFAR ResNet-20, (2, 2, 2, 2) for ResNet-18
    widths      planes per stage; the first stage keeps the resolution, each later one halves it
    stem        "cifar": 3x3 conv, stride 1 (32x32 inputs); "imagenet": 7x7 stride-2 conv + 3x3 max-pool
    stem_width  output channels of the stem conv
    residual    False builds the plain counterpart (no shortcuts at all)
    shortcut    "A", "B" or "C" (see module docstring)
    """

    def __init__(self, block, layers, widths=(16, 32, 64), *, num_classes: int = 10, stem: str = "cifar",
                 stem_width: int | None = None, residual: bool = True, shortcut: str = "A",
                 zero_init_residual: bool = False, in_channels: int = 3):
        super().__init__()
        # One draw from the global RNG seeds all initialisation (see _init_weights).
        init_seed = int(torch.randint(0, 2**62, (1,)))
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut={shortcut!r} is not one of {', '.join(SHORTCUTS)}")
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r} is not one of {', '.join(STEMS)}")
        if len(layers) != len(widths):
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} differ in length")
        self.residual = residual
        self.shortcut_option = shortcut
        stem_width = stem_width or widths[0]
        if stem == "cifar":
            self.conv1 = conv3x3(in_channels, stem_width)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_width)

        cin = stem_width
        stages = []
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, planes, stride, shortcut=shortcut, residual=residual))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        # Named layer1, layer2, ... as in torchvision, so state dicts map one to one.
        self.num_stages = len(stages)
        for i, stage in enumerate(stages):
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = GlobalAvgPool()
        self.fc = nn.Linear(cin, num_classes)
        self.num_features = cin
        self._init_weights(zero_init_residual, init_seed)

    def stages(self):
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def _init_weights(self, zero_init_residual: bool, seed: int) -> None:
        # He et al. init (fan_out, as in the paper's code lineage); BN gamma=1, beta=0; the classifier keeps
        # PyTorch's default rule. Every draw comes from one generator, in a fixed order with the shortcut
        # projections last, so a plain net and its residual twin built from the same seed share identical
        # main-path weights under every shortcut option, not just A.
        g = torch.Generator().manual_seed(seed)
        named = list(self.named_modules())
        ordered = [m for n, m in named if ".shortcut" not in n] + [m for n, m in named if ".shortcut" in n]
        for m in ordered:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5 ** 0.5, generator=g)
                bound = 1 / m.in_features ** 0.5
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(bn_relu(self.bn1, self.conv1(x)))
        for stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))
