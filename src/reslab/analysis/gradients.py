"""Gradient flow: the norm of the loss gradient at every conv's weights, at initialisation and along training.

For each run, every saved snapshot (`checkpoints/snapshot-*.pt`, by default at 0%, 10%, 50% and 100% of
training) is loaded and given one fixed batch of training images, in train mode — batch statistics in BN, as
the optimiser saw it — with no augmentation, so the numbers are deterministic and every run trained under the
same data config gets the very same images. One backward pass of the training loss (mean cross-entropy; weight
decay left out, it is not back-propagated) gives ||dL/dW|| for each conv, listed in forward order, i.e. by depth.

A vanishing gradient shows as norms that fall by orders of magnitude from the last layers to the first. The
paper argues (Sec. 4.1) that BN keeps the gradients of its plain nets healthy, so their degradation is not a
vanishing-gradient problem; this measures it on your runs.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from reslab import ReslabError, layout
from reslab.analysis.common import DataCache, Loaded, check_positive, loaded_from_checkpoint, unique_labels
from reslab.config import resolve_schedule
from reslab.data import splits_for
from reslab.weights.files import load_checkpoint, load_run_checkpoint, require_run_dir
from reslab.engine.device import resolve_device
from reslab.models import model_from_config
from reslab.plotting import integer_ticks, line_style, model_color, plt, save_figure

BATCH_SEED = 0  # which training images form the fixed batch; one constant so every run sees the same ones


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every conv of the main path in forward order (stem first). Shortcut projections (options B/C) are left
    out: they are not on the path whose depth matters, and plain twins have none."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and ".shortcut" not in n]


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[list[str], list[float], list[float], float]:
    """(conv names, ||grad|| of each conv weight, ||weight||, loss) for one forward/backward in train mode."""
    convs = conv_layers(model)
    was_training = model.training
    model.train()  # batch statistics in BN, as the optimiser saw the net (this also moves the running stats)
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    grads = [float(m.weight.grad.norm()) for _, m in convs]
    weights = [float(m.weight.detach().norm()) for _, m in convs]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return [n for n, _ in convs], grads, weights, float(loss.detach())


@dataclass
class GradientPoint:
    iteration: int
    fraction: float       # of the run's training
    source: str           # the snapshot file, or "rebuilt from seed" for an initialisation no snapshot kept
    layers: list[str]
    grad_norm: list[float]
    weight_norm: list[float]
    loss: float


@dataclass
class GradientProfile:
    label: str
    model_name: str
    group: str
    depth: int | None
    batch: int
    points: list[GradientPoint] = field(default_factory=list)


def has_snapshots(run_dir: Path) -> bool:
    return bool(layout.snapshots(run_dir))


def training_indices(cfg, data) -> torch.Tensor:
    """The run's own training split (indices into the CIFAR training set), as the trainer made it."""
    return splits_for(data.train_labels, data.test_labels, cfg.data, val_subset=None, test_subset=None).train


def fixed_batch(loaded: Loaded, data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` images of the run's training split, picked by a fixed seed, normalised as in training,
    without augmentation."""
    train = training_indices(loaded.cfg, data)
    if batch_size > train.numel():
        raise ReslabError(f"--batch-size {batch_size} is more than the run's {train.numel()} training images")
    pick = train[torch.randperm(train.numel(), generator=torch.Generator().manual_seed(BATCH_SEED))[:batch_size]]
    dev = next(loaded.model.parameters()).device
    return loaded.normalizer(data.train_images[pick].to(dev)), data.train_labels[pick].to(dev)


def _rebuilt_initialisation(cfg, device) -> nn.Module:
    """The trainer seeds the global RNG with train.seed right before building the model, so doing the same
    rebuilds the initial weights exactly; the caller's RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        return model_from_config(cfg).to(device)


@dataclass
class GradientInputs:
    """What measuring one run takes, every check made: its checkpoints along training (iteration, checkpoint,
    path), the first of them loaded, the fixed batch and the run's length in iterations."""

    label: str
    points: list[tuple[int, dict, Path]]
    first: Loaded
    batch: tuple[torch.Tensor, torch.Tensor]
    total: int


def gradient_inputs(run_dir: Path, label: str, data_cache: DataCache, batch_size: int,
                    device: torch.device) -> GradientInputs:
    snaps = layout.snapshots(run_dir)
    # Where no snapshot was kept (runs from before snapshots existed), fall back to the newest checkpoint.
    points = [(it, load_checkpoint(p, require_checksum=True), p) for it, p in snaps]
    if not points:
        ckpt, p = load_run_checkpoint(run_dir, "last")
        points = [(int(ckpt.get("iteration") or 0), ckpt, p)]
    first = loaded_from_checkpoint(points[0][1], points[0][2], label, device)
    if first.cfg is None:
        raise ReslabError(f"{run_dir}: its checkpoints record no config, so its training images are unknown")
    data = data_cache.get(first.cfg)
    batch = fixed_batch(first, data, batch_size)
    total = resolve_schedule(first.cfg, training_indices(first.cfg, data).numel()).iterations
    return GradientInputs(label, points, first, batch, total)


def profile_gradients(inputs: GradientInputs, device: torch.device) -> GradientProfile:
    first, (x, y), points = inputs.first, inputs.batch, inputs.points
    prof = GradientProfile(inputs.label, first.model_name, first.group, first.depth, x.shape[0])
    if points[0][0] != 0:
        model = _rebuilt_initialisation(first.cfg, device)
        prof.points.append(GradientPoint(0, 0.0, "rebuilt from seed", *gradient_norms(model, x, y)))
    for i, (it, ckpt, p) in enumerate(points):
        model = first.model if i == 0 else loaded_from_checkpoint(ckpt, p, inputs.label, device).model
        prof.points.append(GradientPoint(it, it / inputs.total, str(p), *gradient_norms(model, x, y)))
    return prof


def measure_gradients(runs: list[str | Path], *, batch_size: int = 128, data_dir: str | None = None,
                      device: str = "cpu", data_cache: DataCache | None = None,
                      announce: Callable[[str], None] | None = None) -> list[GradientProfile]:
    """`announce` gets one line saying what is measured, once every run has been checked and the data read."""
    check_positive("--batch-size", batch_size)
    dirs = []
    for r in runs:
        r = Path(r)
        if r.is_file():
            raise ReslabError(f"{r} is a checkpoint file; gradients need a run directory (its snapshots along "
                              f"training and its training images)")
        dirs.append(require_run_dir(r))
    cache = data_cache or DataCache(data_dir)
    dev = resolve_device(device)
    labels = unique_labels([d.name for d in dirs])
    inputs = [gradient_inputs(d, lab, cache, batch_size, dev) for d, lab in zip(dirs, labels)]
    if announce:
        points = sum(len(i.points) + (i.points[0][0] != 0) for i in inputs)
        announce(f"measuring gradient norms of {len(inputs)} run(s) at {points} points of training, on "
                 f"{batch_size} training images each ...")
    return [profile_gradients(i, dev) for i in inputs]


def first_to_last_ratio(grad_norm: list[float], k: int = 3) -> float:
    """Geometric mean of the first k layers' gradient norms over that of the last k: < 1 means the gradient
    shrinks on its way back to the input, ~1 means it arrives intact."""
    k = max(1, min(k, len(grad_norm) // 2))
    gm = lambda v: math.exp(sum(math.log(max(x, 1e-30)) for x in v) / len(v))  # noqa: E731
    return gm(grad_norm[:k]) / gm(grad_norm[-k:])


# ---- outputs --------------------------------------------------------------------------------------------------

def _point_title(fraction: float) -> str:
    return "initialisation" if fraction == 0 else f"{100 * fraction:.0f}% of training"


def plot_gradients(profiles: list[GradientProfile], path: Path) -> Path:
    """One column per point of training (init, 10%, ...), every run in each, by layer depth, log scale.
    Top: ||dL/dW||. Bottom: ||dL/dW|| / ||W||. BN makes a conv's output blind to the scale of its weights, so
    the raw gradient shrinks as 1/||W|| while weights grow; the ratio is what an SGD step changes a layer by
    (times the learning rate), i.e. how fast each layer actually learns."""
    fractions = sorted({round(pt.fraction, 3) for p in profiles for pt in p.points})
    depths = [p.depth for p in profiles]
    fig, axes = plt.subplots(2, len(fractions), figsize=(3.6 * len(fractions) + 0.6, 6.6), sharey="row",
                             squeeze=False)
    for col, frac in enumerate(fractions):
        for p in sorted(profiles, key=lambda p: (p.depth or 0, p.group != "plain", p.label)):
            pt = next((q for q in p.points if round(q.fraction, 3) == frac), None)
            if pt is None:
                continue
            style = dict(ls=line_style(p.group), lw=1.5, color=model_color(p.group, p.depth, depths), label=p.label)
            x = range(1, len(pt.grad_norm) + 1)
            axes[0][col].plot(x, pt.grad_norm, **style)
            axes[1][col].plot(x, [g / w for g, w in zip(pt.grad_norm, pt.weight_norm)], **style)
        its = sorted({q.iteration for p in profiles for q in p.points if round(q.fraction, 3) == frac})
        axes[0][col].set_title(f"{_point_title(frac)} (iter {', '.join(map(str, its))})", fontsize=9)
        for ax in axes[:, col]:
            ax.set_yscale("log")
            integer_ticks(ax.xaxis)
            ax.grid(alpha=0.3, which="both")
        axes[1][col].set_xlabel("conv layer (1 = first, by depth)")
    axes[0][0].set_ylabel("||dL/dW||")
    axes[1][0].set_ylabel("||dL/dW|| / ||W||")
    axes[0][-1].legend(fontsize=8, title="dashed: plain, solid: ResNet", title_fontsize=8)
    fig.suptitle(f"Gradient norm of each conv's weights on one fixed batch of {profiles[0].batch} training images "
                 f"(train-mode BN)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, Path(path))


CSV_FIELDS = ("label", "model", "group", "depth", "iteration", "fraction", "batch", "loss", "layer_index", "layer",
              "grad_norm", "weight_norm", "source")


def write_gradients_csv(profiles: list[GradientProfile], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for p in profiles:
            for pt in p.points:
                for i, (name, g, wn) in enumerate(zip(pt.layers, pt.grad_norm, pt.weight_norm)):
                    w.writerow([p.label, p.model_name, p.group, p.depth, pt.iteration, f"{pt.fraction:.4g}", p.batch,
                                f"{pt.loss:.6g}", i + 1, name, f"{g:.6g}", f"{wn:.6g}", pt.source])
    return Path(path)
