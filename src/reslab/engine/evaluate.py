"""Evaluation: error, loss, per-class accuracy and the confusion matrix, on any split."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from reslab.data import CLASSES, Normalizer


@dataclass
class EvalResult:
    loss: float
    error: float              # percent
    n: int
    confusion: torch.Tensor   # (classes, classes) int64: rows = true class, columns = predicted
    classes: tuple = CLASSES
    correct: torch.Tensor | None = None  # (n,) bool on the CPU, True where image i was right (keep_correct=True)

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(1).clamp(min=1)
        return (100.0 * self.confusion.diag() / totals).tolist()

    def as_dict(self) -> dict:
        return {"error": self.error, "loss": self.loss, "n": self.n,
                "per_class": {c: round(a, 2) for c, a in zip(self.classes, self.per_class_accuracy)},
                "confusion": self.confusion.tolist()}


class EvalOptions(TypedDict, total=False):
    """`evaluate`'s keyword options, for a caller that sets them once and evaluates with them more than once."""

    batch_size: int
    amp: str
    channels_last: bool
    classes: tuple
    shard: tuple[int, int] | None
    keep_correct: bool


def autocast(device: torch.device, amp: str):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalizer: Normalizer, *,
             batch_size: int = 1000, amp: str = "none", channels_last: bool = False,
             classes: tuple = CLASSES, shard: tuple[int, int] | None = None,
             keep_correct: bool = False) -> EvalResult:
    """Single-view evaluation (the paper's protocol) of uint8 `images` on the model's device; with
    `keep_correct`, also which images it got right (EvalResult.correct, for the paired verdicts).

    shard=(rank, world_size), in a torch.distributed job: this process runs batches rank, rank + world_size,
    ... of the very batches one process would run, and the confusion matrix and per-batch loss sums are
    all-reduced — every rank returns the single-process result (the error exactly; the loss summed in the
    same batch order)."""
    num_classes = len(classes)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    normalizer = normalizer.to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    starts = range(0, images.shape[0], batch_size)
    right = torch.zeros(images.shape[0] if keep_correct else 0, dtype=torch.int32, device=device)
    rank, world_size = shard if shard is not None else (0, 1)
    sharded = world_size > 1
    if sharded:
        batch_losses = torch.zeros(len(starts), dtype=torch.float64, device=device)
        mine = starts[rank::world_size]
    try:
        for i in (mine if sharded else starts):
            x = normalizer(images[i:i + batch_size].to(device, non_blocking=True))
            y = labels[i:i + batch_size].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                out = model(x)
            batch_loss = F.cross_entropy(out.float(), y, reduction="sum").double()
            if sharded:
                batch_losses[i // batch_size] = batch_loss
            else:
                loss_sum += batch_loss
            pred = out.argmax(1)
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2)
            if keep_correct:
                right[i:i + batch_size] = (pred == y).to(torch.int32)
    finally:
        model.train(was_training)
    if sharded:
        import torch.distributed as dist

        dist.all_reduce(confusion)
        dist.all_reduce(batch_losses)
        if keep_correct:  # each rank filled its own batches' rows; the rest are 0
            dist.all_reduce(right)
        for v in batch_losses.tolist():  # in batch order, as one process adds them up
            loss_sum += v
    n = int(images.shape[0])
    confusion = confusion.view(num_classes, num_classes).cpu()
    correct = int(confusion.diag().sum())
    return EvalResult(loss=float(loss_sum) / max(n, 1), error=100.0 * (n - correct) / max(n, 1), n=n,
                      confusion=confusion, classes=tuple(classes),
                      correct=right.bool().cpu() if keep_correct else None)
