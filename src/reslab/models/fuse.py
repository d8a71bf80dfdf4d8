"""Conv-BN folding for evaluation: in eval mode BN is an affine map per channel, so it can be folded into the
preceding conv's weights and a bias — one op instead of two, same outputs up to float rounding."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias
    return fused


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-only copy of `model` with every Conv2d directly followed by its BatchNorm2d folded together.

    Works on the naming convention of reslab's blocks: convN/bnN pairs inside a module, and Sequential
    (conv, bn) projections. The original model is untouched."""
    m = copy.deepcopy(model).eval()
    for module in list(m.modules()):
        names = dict(module.named_children())
        for name, child in names.items():
            if isinstance(child, nn.Conv2d) and name.startswith("conv"):
                bn_name = "bn" + name[len("conv"):]
                bn = names.get(bn_name)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, name, _fold(child, bn))
                    setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            kids = list(module)
            for i in range(len(kids) - 1):
                if isinstance(kids[i], nn.Conv2d) and isinstance(kids[i + 1], nn.BatchNorm2d):
                    module[i] = _fold(kids[i], kids[i + 1])
                    module[i + 1] = nn.Identity()
    return m
