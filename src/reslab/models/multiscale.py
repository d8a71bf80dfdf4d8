"""ResNet-18 with multi-scale feature extraction (`resnet18_ms`) and its plain twin (`plain18_ms`).

Design (full rationale and the budget table in docs/multiscale.md)
------------------------------------------------------------------
ResNet-18's stages, widths, strides, stem, shortcuts and classifier are kept. Inside every one of its 8 blocks
the second 3x3 convolution is replaced by two parallel branches that look at the same features at two scales,
fused by a 1x1 convolution:

    x ─ conv3x3(stride s) ─ BN ─ ReLU ─┬─ conv3x3, dilation 1 ─ BN ─ ReLU ─┐
                                       └─ conv3x3, dilation 2 ─ BN ─ ReLU ─┴─ concat ─ conv1x1 ─ BN
                                                                                  ─(+ shortcut(x))─ ReLU

* Dilation 2 gives the second branch a 5x5 receptive field for the price of a 3x3 (9 instead of 25 weights per
  channel pair, or 18 for two stacked 3x3s); the parallel dilation-1 branch covers the taps the dilated kernel
  skips, so there is no gridding.
* Each branch has its own BN + ReLU *before* the fusion: without that non-linearity the two branches and the
  1x1 would collapse into one linear 5x5-sized convolution — a re-parameterisation, not multi-scale features.
  The 1x1 then learns, per output channel, how to mix the two scales (as in Inception's branch fusion).
* Two branches, not three: a third full-width branch (dilation 3) would take the parameters over ResNet-34's,
  and on the last stage's 4x4 maps (32x32 input, CIFAR stem) a dilation-3 kernel sees mostly padding.
* Per-block branches rather than a feature-pyramid fusion of the four stages: the classifier pools globally,
  so an FPN's top-down path mostly buys localisation (what detection needs), and fusing at stage 1's 32x32
  resolution with 3x3 convs would cost ~0.6 GMACs alone; pooling each stage and concatenating is nearly free
  but adds only weak early-stage features. Multi-scale branches give *every* depth a local and a wider view.

Budget (10 classes, CIFAR stem, 32x32, option A): resnet18_ms 18,667,338 parameters / 0.92 GMACs, against
resnet34's 21,108,298 / 1.15 GMACs and resnet18's 11,000,138 / 0.55 GMACs (at 224x224 with the ImageNet stem:
2.92 vs 3.64 and 1.79 GMACs); tests/test_imagenet_style.py checks the inequalities for both stems. Depth,
honestly counted: every block has three weighted layers on each path (3x3, branch 3x3, 1x1),
so the longest path has 1 + 8 x 3 + 1 = 26 weighted layers — more than ResNet-18's 18, fewer than ResNet-34's 34.

`plain18_ms` is the same class with residual=False: no shortcuts, every weight and the initialisation otherwise
identical (equal parameter counts under option A), so the plain-vs-residual comparison still holds.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from reslab.models.imagenet import DEFAULT_WIDTH, FAMILY, OPTIONS, check_family_kwargs, stage_widths
from reslab.models.registry import register_model
from reslab.models.bn_act import bn_relu
from reslab.models.resnet import ResNet, conv3x3, make_shortcut

DILATIONS = (1, 2)


class MultiScaleBlock(nn.Module):
    """A basic block whose second 3x3 conv is replaced by parallel dilated 3x3 branches fused by a 1x1 conv."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "A", residual: bool = True,
                 dilations=DILATIONS):
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.branches = nn.ModuleList(
            nn.Sequential(conv3x3(planes, planes, dilation=d), nn.BatchNorm2d(planes), nn.ReLU(inplace=True))
            for d in dilations)
        self.fuse = nn.Conv2d(planes * len(dilations), planes, 1, bias=False)
        self.bn_fuse = nn.BatchNorm2d(planes)
        if residual:
            self.shortcut = make_shortcut(cin, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = bn_relu(self.bn1, self.conv1(x))
        out = torch.cat([b(out) for b in self.branches], dim=1)
        return bn_relu(self.bn_fuse, self.fuse(out), self.shortcut(x) if self.residual else None)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn_fuse


def resnet18_multiscale(*, residual: bool = True, num_classes: int = 10, stem: str = "cifar", shortcut: str = "A",
                        zero_init_residual: bool = False, width: int = DEFAULT_WIDTH) -> ResNet:
    name = "resnet18_ms" if residual else "plain18_ms"
    check_family_kwargs(name, stem, shortcut, width)
    model = ResNet(MultiScaleBlock, (2, 2, 2, 2), stage_widths(width), num_classes=num_classes, stem=stem,
                   stem_width=width, residual=residual, shortcut=shortcut)
    if zero_init_residual:  # ResNet only knows its own block types; zero this block's last BN here
        for m in model.modules():
            if isinstance(m, MultiScaleBlock):
                nn.init.zeros_(m.last_bn().weight)
    return model


@register_model(family=FAMILY, depth=18, residual=True, options=OPTIONS)
def resnet18_ms(**kw) -> ResNet:
    """ResNet-18 with multi-scale blocks (parallel dilation-1/2 3x3 branches, 1x1 fusion); see docs/multiscale.md."""
    return resnet18_multiscale(residual=True, **kw)


@register_model(family=FAMILY, depth=18, residual=False, options=OPTIONS)
def plain18_ms(**kw) -> ResNet:
    """resnet18_ms without shortcuts (its plain twin)."""
    return resnet18_multiscale(residual=False, **kw)

