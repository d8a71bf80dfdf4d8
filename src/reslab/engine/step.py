"""One training step, input pipeline included — shared by the trainer and by `reslab bench`, so the
benchmark measures exactly what training runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reslab.data import Normalizer, augment
from reslab.engine.evaluate import autocast


def training_batch(images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, normalizer: Normalizer, *,
                   augment_seed: int | None, pad: int = 4, pad_fill: str = "mean", channels_last: bool = False,
                   shard: tuple[int, int] | None = None):
    """Gather a batch of uint8 images on their device, normalise, and (if `augment_seed` is given) pad-crop-flip
    it with a generator seeded by `augment_seed` alone — so any step can be replayed exactly.

    pad_fill="mean": the padding is zero after normalisation (the mean colour); "black": pixel value 0, padded
    before normalising (torchvision's RandomCrop(padding=4), which most PyTorch reproductions use).

    shard=(start, stop): only rows idx[start:stop] of the (global) batch are gathered, and augmented with the
    randomness drawn for the whole batch — one distributed process's exact slice of a single-process batch."""
    if shard is not None:
        start, stop = shard
        total = idx.shape[0]
        idx = idx[start:stop]
    x = images[idx]
    y = labels[idx]
    if pad_fill == "mean":
        x = normalizer(x)
    if augment_seed is not None:
        g = torch.Generator(device=x.device)
        g.manual_seed(augment_seed)
        x = augment(x, g, pad=pad, shard=(start, total) if shard is not None else None)
    if pad_fill == "black":
        x = normalizer(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def train_step(model, optimizer, scaler, x: torch.Tensor, y: torch.Tensor, amp: str = "none"):
    """Forward, loss, backward, update. Returns (loss, logits), both detached and left on the device
    (no host sync here: the caller decides when to read them)."""
    with autocast(x.device, amp):
        out = model(x)
        loss = F.cross_entropy(out.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), out.detach()
