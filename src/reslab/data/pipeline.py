"""Splits, normalisation and augmentation — all on whole uint8 batches on the training device.

The images stay uint8 on the device for the whole run (150 MB for CIFAR-10). A training batch is gathered
by index, converted to float, normalised and augmented in a handful of tensor ops; there is no DataLoader,
no worker process and no per-image Python.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reslab import ReslabError
from reslab.data.cifar import OFFICIAL_TEST, OFFICIAL_TRAIN

NORMALIZATIONS = ("channel", "pixel", "none")
PAD_FILLS = ("mean", "black")  # augmentation padding: zero after normalisation, or black pixels before it


def _generator(seed: int, device="cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, iteration, ...); stable across runs and platforms."""
    h = 1469598103934665603
    for p in parts:
        h ^= int(p) & 0xFFFFFFFFFFFFFFFF
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def balanced_indices(labels: torch.Tensor, per_class: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `per_class[c]` random images of each class c (seeded); return (picked, rest), each sorted."""
    g = _generator(seed)
    picked, rest = [], []
    for c, k in enumerate(per_class):
        idx = torch.nonzero(labels == c, as_tuple=True)[0]
        if k > idx.numel():
            raise ReslabError(f"asked for {k} images of class {c}, but only {idx.numel()} exist")
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        picked.append(idx[:k])
        rest.append(idx[k:])
    return torch.cat(picked).sort().values, torch.cat(rest).sort().values


def spread(n: int, classes: int = 10) -> list[int]:
    """n images spread over the classes as evenly as possible (the first n % classes get one more)."""
    return [n // classes + (1 if c < n % classes else 0) for c in range(classes)]


@dataclass
class Splits:
    """Index tensors into the CIFAR train set (train, val, probe) and test set (test)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    probe: torch.Tensor  # the train probe: a fixed class-balanced part of `train` (empty: none)


def make_splits(train_labels: torch.Tensor, test_labels: torch.Tensor, *, val_size: int, split_seed: int,
                train_subset: int | None = None, test_subset: int | None = None,
                val_subset: int | None = None, train_probe: int | None = None) -> Splits:
    """The paper's split: `val_size` class-balanced images held out of the 50k for validation (45k/5k with
    val_size=5000; 0 trains on all 50k). `train_subset`/`val_subset`/`test_subset` take class-balanced seeded
    subsets for short runs. `train_probe` picks that many class-balanced images of the training split (all of it
    when it is no larger) for measuring the training error without augmentation. The split seed is separate from
    the training seed, so runs with different training seeds share one validation set and one probe."""
    n_train = train_labels.numel()
    classes = int(train_labels.max()) + 1 if n_train else 10  # 10 for CIFAR-10, 100 for CIFAR-100
    if val_size >= n_train:
        raise ReslabError(f"data.val_size={val_size} leaves no training images (the set has {n_train})")
    if val_size:
        val, train = balanced_indices(train_labels, spread(val_size, classes), split_seed)
    else:
        val, train = torch.empty(0, dtype=torch.long), torch.arange(n_train)
    test = torch.arange(test_labels.numel())

    def subset(idx, labels, n, key, name):
        if n is None:
            return idx
        if n == 0:  # data.test_subset=0: a validation-only run evaluates no test image
            return idx[:0]
        if n > idx.numel():
            raise ReslabError(f"data.{name}={n} is larger than the split ({idx.numel()} images)")
        pick, _ = balanced_indices(labels[idx], spread(n, classes), mix_seed(split_seed, key))
        return idx[pick]

    train = subset(train, train_labels, train_subset, 1, "train_subset")
    if train_probe is None:
        probe = torch.empty(0, dtype=torch.long)
    else:
        probe = subset(train, train_labels, train_probe, 4, "train_probe") if train_probe < train.numel() else train
    return Splits(train, subset(val, train_labels, val_subset, 2, "val_subset"),
                  subset(test, test_labels, test_subset, 3, "test_subset"), probe)


def splits_for(train_labels: torch.Tensor, test_labels: torch.Tensor, d, **overrides) -> Splits:
    """The splits a data config (`cfg.data`) asks for: the one place a config becomes index tensors.
    `overrides` replace single fields (e.g. `val_subset=None` to evaluate on the whole validation split)."""
    kw = {"val_size": d.val_size, "split_seed": d.split_seed, "train_subset": d.train_subset,
          "val_subset": d.val_subset, "test_subset": d.test_subset, "train_probe": d.train_probe, **overrides}
    return make_splits(train_labels, test_labels, **kw)


def n_train_images(d) -> int:
    """How many images a data config trains on, without reading the data: its subset, or the official 50k
    minus the validation split."""
    return d.train_subset or (OFFICIAL_TRAIN - d.val_size)


def n_eval_images(d) -> tuple[int, int]:
    """(validation, test) images of one evaluation point of a data config, without reading the data."""
    return (d.val_subset or d.val_size) if d.val_size else 0, OFFICIAL_TEST if d.test_subset is None else d.test_subset


def n_probe_images(d) -> int:
    """Images of the train probe of a data config (evaluated once, at the final evaluation point)."""
    return min(d.train_probe or 0, n_train_images(d))


FIT_CHUNK = 1024  # images per step of Normalizer.fit: 25 MB of int64 at a time


def pixel_sums(images: torch.Tensor, rows: torch.Tensor | None = None,
               squares: bool = True) -> tuple[int, torch.Tensor, torch.Tensor | None]:
    """(N, per-pixel sum, per-pixel sum of squares) of uint8 `images` (or `images[rows]`) as exact int64,
    FIT_CHUNK images at a time."""
    n = images.shape[0] if rows is None else rows.numel()
    s1 = torch.zeros(images.shape[1:], dtype=torch.int64, device=images.device)
    s2 = torch.zeros_like(s1) if squares else None
    for start in range(0, n, FIT_CHUNK):
        part = images[start:start + FIT_CHUNK] if rows is None else images[rows[start:start + FIT_CHUNK]]
        x = part.to(torch.int64)
        s1 += x.sum(0)
        if squares:
            s2 += x.mul_(x).sum(0)
    return n, s1, s2


class Normalizer:
    """uint8 images -> normalised float.

    channel  (x/255 - mean_c) / std_c, per-channel statistics of the training images (the usual choice)
    pixel    x/255 - mean image: the paper's "per-pixel mean subtracted" (Sec. 4.2), no division
    none     x/255
    The statistics are computed from the training split and stored with every checkpoint, so evaluation
    always uses what training used.
    """

    def __init__(self, kind: str, mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 note: str = ""):
        if kind not in NORMALIZATIONS:
            raise ReslabError(f"normalization {kind!r} is not one of {', '.join(NORMALIZATIONS)}")
        self.kind, self.note = kind, note
        self.mean = mean.float() if mean is not None else None
        self.std = std.float() if std is not None else None

    @classmethod
    def fit(cls, images: torch.Tensor, kind: str, rows: torch.Tensor | None = None) -> "Normalizer":
        """The statistics of uint8 `images` (N, 3, H, W), or of `images[rows]`: exact integer sums over chunks
        of FIT_CHUNK images, so no float copy of the whole set is ever made (a float64 copy of CIFAR-10 is 1.2 GB)."""
        if kind == "none":
            return cls("none", note="x/255")
        n, s1, s2 = pixel_sums(images, rows, squares=kind == "channel")
        if kind == "pixel":
            return cls("pixel", (s1.double() / (n * 255.0)).float(), note="per-pixel mean of the training split")
        count = n * images.shape[2] * images.shape[3]
        sums, squares = s1.sum((1, 2)).tolist(), s2.sum((1, 2)).tolist()  # exact Python ints
        mean = [s / (count * 255) for s in sums]
        # population variance from exact integers: (count * sum x^2 - (sum x)^2) / (count * 255)^2
        std = [math.sqrt((count * q - s * s) / (count * 255) ** 2) for s, q in zip(sums, squares)]
        return cls("channel", torch.tensor(mean), torch.tensor(std), note="per-channel mean/std of the training split")

    def to(self, device) -> "Normalizer":
        return Normalizer(self.kind, None if self.mean is None else self.mean.to(device),
                          None if self.std is None else self.std.to(device), self.note)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        if self.kind == "channel":
            x = x.sub_(self.mean.view(1, 3, 1, 1)).div_(self.std.view(1, 3, 1, 1))
        elif self.kind == "pixel":
            x = x.sub_(self.mean.unsqueeze(0))
        return x

    def state_dict(self) -> dict:
        return {"kind": self.kind, "note": self.note,
                "mean": None if self.mean is None else self.mean.cpu(),
                "std": None if self.std is None else self.std.cpu()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "Normalizer":
        return cls(d["kind"], d.get("mean"), d.get("std"), d.get("note", ""))

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "Normalizer":
        """The normalisation a model built with `create_model(..., pretrained=...)` carries."""
        norm = getattr(model, "normalizer", None)
        if not isinstance(norm, cls):
            raise ReslabError("this model carries no normalisation (build it with create_model(..., pretrained=...))")
        return norm

    def describe(self) -> str:
        if self.kind == "channel":
            fmt = lambda t: "(" + ", ".join(f"{v:.4f}" for v in t.tolist()) + ")"  # noqa: E731
            return f"channel mean {fmt(self.mean)} std {fmt(self.std)} [{self.note}]"
        return f"{self.kind} [{self.note}]"


class NormalizeInput(torch.nn.Module):
    """A Normalizer as the first layer of a network: float images in [0, 1] (N, 3, H, W) in, normalised out.
    Explicit subtract/divide ops, so exported graphs (ONNX, torch.export) carry the normalisation too."""

    def __init__(self, normalizer: Normalizer):
        super().__init__()
        self.kind = normalizer.kind
        mean = normalizer.mean if normalizer.mean is not None else torch.zeros(3)
        if normalizer.kind == "channel":
            mean = mean.view(1, 3, 1, 1)
        self.register_buffer("mean", mean.float().clone())
        std = normalizer.std if normalizer.kind == "channel" else torch.ones(3)
        self.register_buffer("std", std.float().view(1, 3, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        return (x - self.mean) / self.std if self.kind == "channel" else x - self.mean

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True,
            shard: tuple[int, int] | None = None) -> torch.Tensor:
    """The paper's augmentation for a whole batch: zero-pad `pad` pixels, random crop back to the input size,
    random horizontal flip — as one gather, on whatever device `x` lives on.

    Padding is zero in whatever space `x` is in: normalised images (zero = the mean, as in the paper's Torch
    lineage), or uint8 images (zero = black, as torchvision's RandomCrop(padding=...)).

    shard=(start, total): `x` holds rows start .. start+len(x) of a batch of `total` (one process's slice of
    a distributed global batch). The offsets and flips are drawn for all `total` rows, exactly as for the
    whole batch, and this slice's rows are used — so the slices of N processes together are augmented exactly
    as the whole batch would be in one.
    """
    b, c, h, w = x.shape
    dev = x.device
    start, total = shard if shard is not None else (0, b)
    if not 0 <= start <= total - b:
        raise ReslabError(f"augment shard {shard}: rows {start}..{start + b} do not lie in a batch of {total}")
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (total,), device=dev, generator=generator)[start:start + b]
    ox = torch.randint(0, 2 * pad + 1, (total,), device=dev, generator=generator)[start:start + b]
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h  # (b, h)
    cols = ox[:, None] + ar_w  # (b, w)
    if flip:
        flipped = (torch.rand(total, device=dev, generator=generator) < 0.5)[start:start + b]
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
