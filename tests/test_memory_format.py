"""One memory format through the whole training step (issue 19).

A CPU op that gets 4-D tensors in different memory formats leaves its vectorised path (threshold_backward: ~14x
slower; batch-norm backward: a serial per-channel loop). A training step runs under a TorchDispatchMode that
records every aten op whose 4-D tensor arguments disagree in layout; the step must record none, for every family.
The shapes keep batch >= 2 and H, W > 1 at every stage, or both layouts coincide and the check could not fail.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from reslab.engine.step import train_step
from reslab.models import bn_act, create_model
from reslab.models.resnet import GlobalAvgPool, PadShortcut


def layout(t: torch.Tensor) -> str | None:
    """'nchw', 'nhwc' or another dimension order, read from the strides; None where the layout says nothing
    (not 4-D, a broadcast dimension, or at most one dimension larger than 1)."""
    if t.dim() != 4:
        return None
    dims = [d for d in range(4) if t.size(d) > 1]
    if any(t.stride(d) == 0 for d in dims):
        return None
    order = tuple(sorted(dims, key=lambda d: -t.stride(d)))
    nchw, nhwc = tuple(d for d in (0, 1, 2, 3) if d in dims), tuple(d for d in (0, 2, 3, 1) if d in dims)
    if order == nchw == nhwc:
        return None
    return "nchw" if order == nchw else "nhwc" if order == nhwc else str(order)


class MixedFormats(TorchDispatchMode):
    """Records (op, [(shape, layout), ...]) for every aten op whose 4-D tensor arguments differ in layout."""

    def __init__(self):
        super().__init__()
        self.mixed, self.ops = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        seen = {layout(t) for t in tensors} - {None}
        self.ops += 1
        if len(seen) > 1:
            self.mixed.append((str(func), [(tuple(t.shape), layout(t)) for t in tensors if t.dim() == 4]))
        return func(*args, **kwargs)


# Batch 4, not 3: torch 2.13's oneDNN (AVX-512 kernels) crashes in the backward of a channels_last 1x1 stride-2
# conv at batch 3, 8 -> 16 channels, 16x16 (seen on AMD Zen 5; fine with ONEDNN_MAX_CPU_ISA=AVX2 or in NCHW).
def step_under_check(model: nn.Module, size: int, amp: str = "none", batch: int = 4) -> MixedFormats:
    torch.manual_seed(0)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    with MixedFormats() as mode:
        train_step(model, opt, scaler, x, y, amp)
    return mode


# (model name, keyword arguments, image size): every family, every shortcut option, both stems. Sizes keep the
# last stage at >= 2x2.
FAMILIES = [
    ("resnet8", {}, 32), ("plain8", {}, 32),
    ("resnet8", {"shortcut": "B"}, 32), ("resnet8", {"shortcut": "C"}, 32),
    ("resnet18", {"width": 8}, 32), ("plain18", {"width": 8}, 32),
    ("resnet50", {"width": 4}, 32), ("resnet50", {"width": 4, "shortcut": "B"}, 32), ("plain50", {"width": 4}, 32),
    ("resnet18", {"width": 8, "stem": "imagenet", "shortcut": "B"}, 64),
    ("resnet18_ms", {"width": 4}, 32), ("plain18_ms", {"width": 4}, 32),
]


@pytest.mark.parametrize("fused", [True, False], ids=["fused-bn", "pytorch-bn"])
@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("name,kwargs,size", FAMILIES, ids=lambda v: str(v) if not isinstance(v, dict) else
                         ",".join(f"{k}={x}" for k, x in v.items()))
def test_a_training_step_keeps_one_memory_format(name, kwargs, size, amp, fused):
    """With the fused BatchNorm+ReLU kernel (its own tensors are channels_last by construction) and without it
    (every ATen op of the block visible to the check)."""
    with bn_act.enabled(fused):
        mode = step_under_check(create_model(name, **kwargs), size, amp)
    assert mode.ops > 100  # the step really ran under the mode
    assert mode.mixed == [], f"{name} {kwargs} {amp}: ops with mixed memory formats: {mode.mixed}"


class PlantedMix(nn.Module):
    """A net whose forward adds an NCHW tensor to a channels_last one: the check must catch it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3, padding=1)

    def forward(self, x):
        out = self.conv(x)
        out = out + out.detach().contiguous()  # NCHW copy into a channels_last sum
        return out.mean((2, 3))


def test_the_check_catches_a_planted_mixed_format_op():
    mode = step_under_check(PlantedMix(), 8)
    assert any(op.startswith("aten.add") for op, _ in mode.mixed), mode.mixed


def test_the_check_catches_the_old_slicing_shortcut():
    """The form the option-A shortcut had before: its slicing backward hands back an NCHW gradient."""
    class SlicedShortcut(PadShortcut):
        def forward(self, x):
            return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad_before, self.pad_after))

    model = create_model("resnet8")
    for block in (model.layer2[0], model.layer3[0]):
        block.shortcut = SlicedShortcut(block.shortcut.pad_before * 2, block.conv1.out_channels, 2)
    assert step_under_check(model, 32).mixed


def test_layout_reads_strides():
    x = torch.randn(2, 3, 4, 5)
    assert layout(x) == "nchw"
    assert layout(x.contiguous(memory_format=torch.channels_last)) == "nhwc"
    assert layout(torch.randn(2, 3, 1, 1)) is None          # both layouts coincide
    assert layout(torch.randn(2, 3, 1, 1).expand(2, 3, 4, 5)) is None  # broadcast
    assert layout(x.contiguous(memory_format=torch.channels_last)[:, 1:]) == "nhwc"  # a channel slice keeps it


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hw", [8, 7, 5])
def test_the_pooling_forms_are_bitwise_the_old_ones(dtype, hw):
    """The new shortcut subsample and head pool compute exactly what the old ops did, forward and backward."""
    x = torch.randn(4, 6, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 6, dtype=dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    pool, old = GlobalAvgPool().train(), nn.AdaptiveAvgPool2d(1)
    out_new, out_old = pool(a).flatten(1), old(b).flatten(1)
    assert torch.equal(out_new, out_old)
    out_new.backward(g)
    out_old.backward(g)
    assert torch.equal(a.grad, b.grad)
    assert layout(a.grad) == "nhwc"
    assert torch.equal(pool.eval()(x), old(x))

    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    sub_new, sub_old = F.avg_pool2d(a, 1, 2), b[:, :, ::2, ::2]
    assert torch.equal(sub_new, sub_old)
    gs = torch.randn_like(sub_old)
    sub_new.backward(gs)
    sub_old.backward(gs)
    assert torch.equal(a.grad, b.grad)
