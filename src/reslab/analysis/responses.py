"""The paper's Figure 7: the standard deviation of every 3x3 layer's response.

He et al. 2016, Sec. 4.2: "The responses are the outputs of each 3x3 layer, after BN and before other
nonlinearity (ReLU/addition)." So the tensor measured is exactly the output of the BatchNorm that follows each
3x3 conv — the stem's `bn1` and, in a BasicBlock, `bn1` (before its ReLU) and `bn2` (before the shortcut is
added). The argument of the paper: if residual functions are closer to zero than unreferenced ones, a
ResNet's responses are smaller than its plain twin's, and smaller still in deeper ResNets.

How the std is taken: per channel, over every image and position of the evaluation split (eval-mode BN, the
network as it predicts), then averaged over the layer's channels (`std`). The std of all the layer's values
pooled together (`std_pooled`, which also counts differences between channel means) goes into the CSV too; the
paper does not say which of the two it plots, and both tell the same story here.

The pitfall this module is built around: blocks reuse one `nn.ReLU(inplace=True)`. A forward hook that keeps a
reference to a BN output sees it overwritten by the ReLU a moment later (a plain block's `bn2` output, the
stem's `bn1` output, every `bn1` output), so the hook reduces the tensor to statistics *inside* the hook, before
the ReLU runs. `capture_responses` (tests, debugging) clones for the same reason.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from reslab import ReslabError
from reslab.analysis.common import DataCache, Loaded, check_positive, loaded_from_checkpoint, unique_labels
from reslab.config import Config
from reslab.data import splits_for
from reslab.weights import load_checkpoint_source
from reslab.engine.device import resolve_device
from reslab.plotting import DEPTH_PALETTE, integer_ticks, line_style, model_color, plt, save_figure

SPLITS = ("test", "val")


@dataclass
class Layer:
    name: str       # the conv's module name, e.g. "layer2.0.conv1" ("conv1" is the stem)
    conv: nn.Conv2d
    bn: nn.BatchNorm2d


def response_layers(model: nn.Module) -> list[Layer]:
    """Every 3x3 conv of the main path with the BN that follows it, in forward order.

    Modules are registered in forward order (stem, then each block's conv1, bn1, conv2, bn2), and each
    `...convK` is normalised by its sibling `...bnK`. Shortcut projections are 1x1 and not part of Fig. 7.
    """
    modules = dict(model.named_modules())
    layers = []
    for name, m in modules.items():
        if not isinstance(m, nn.Conv2d) or m.kernel_size != (3, 3) or ".shortcut" in name:
            continue
        prefix, _, leaf = name.rpartition(".")
        bn_name = (prefix + "." if prefix else "") + leaf.replace("conv", "bn", 1)
        bn = modules.get(bn_name)
        if not isinstance(bn, nn.BatchNorm2d):
            raise ReslabError(f"3x3 layer {name} has no BatchNorm {bn_name}; Fig. 7 responses are defined after BN")
        layers.append(Layer(name, m, bn))
    if not layers:
        raise ReslabError(f"{type(model).__name__} has no 3x3 conv layers to analyse")
    return layers


class _ChannelMoments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch (Chan et al.), in float64:
    exact over any number of images, and stable where a mean is large against the std."""

    def __init__(self):
        self.n = 0
        self.mean = None
        self.m2 = None

    def add(self, out: torch.Tensor) -> None:
        # Runs inside the BN's forward hook: `out` is reduced here, before the inplace ReLU can touch it.
        var, mean = torch.var_mean(out.detach().float(), dim=(0, 2, 3), correction=0)
        k = out.numel() // out.shape[1]
        mean, m2 = mean.double().cpu(), var.double().cpu() * k
        if self.n == 0:
            self.n, self.mean, self.m2 = k, mean, m2
            return
        n = self.n + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / n)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.n * k / n)
        self.n = n

    def std(self) -> float:
        """Mean over channels of the per-channel std."""
        return float((self.m2 / self.n).sqrt().mean())

    def std_pooled(self) -> float:
        """Std of every value of the layer taken together: within-channel variance plus the spread of the channel
        means (every channel has the same count)."""
        var_c = self.m2 / self.n
        return float((var_c.mean() + self.mean.var(correction=0)).sqrt())


def layer_stds(model: nn.Module, batches) -> tuple[list[str], list[float], list[float]]:
    """(layer names, std, pooled std) of each 3x3 layer's response over `batches` (normalised image tensors),
    in eval mode."""
    layers = response_layers(model)
    moments = [_ChannelMoments() for _ in layers]
    handles = [layer.bn.register_forward_hook(lambda mod, inp, out, acc=acc: acc.add(out))
               for layer, acc in zip(layers, moments)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if moments[0].n == 0:
        raise ReslabError("no images to measure responses on")
    return [la.name for la in layers], [m.std() for m in moments], [m.std_pooled() for m in moments]


def capture_responses(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every 3x3 layer's response to one batch, whole (cloned in the hook, before the inplace ReLU)."""
    layers = response_layers(model)
    got: dict[str, torch.Tensor] = {}
    handles = [la.bn.register_forward_hook(
                   lambda mod, inp, out, name=la.name: got.__setitem__(name, out.detach().clone()))
               for la in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return got


@dataclass
class ResponseProfile:
    """One network's Fig. 7 numbers."""

    label: str
    model_name: str
    group: str
    depth: int | None
    source: str
    iteration: int | None
    split: str
    images: int
    layers: list[str] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    std_pooled: list[float] = field(default_factory=list)


def check_split(loaded: Loaded, split: str) -> None:
    """Fail before any data is loaded where the split cannot exist for these weights."""
    if split not in SPLITS:
        raise ReslabError(f"--split {split!r} is not allowed; use {' or '.join(SPLITS)}")
    if split == "val" and loaded.cfg is None:
        raise ReslabError(f"{loaded.path} was imported and has no training split recorded; its validation split "
                          f"is unknown, use --split test")
    if split == "val" and not loaded.cfg.data.val_size:
        raise ReslabError(f"{loaded.path} was trained without a validation split (data.val_size=0); use --split test")


def evaluation_images(loaded: Loaded, data, split: str, max_images: int | None) -> torch.Tensor:
    """uint8 images of the split; with `max_images` smaller than the split, a class-balanced seeded subset of
    that many (the same images for every run trained under one data config, so plain and residual nets are
    measured on one set — and, for a study that tested on `data.test_subset` images, the very same ones)."""
    check_split(loaded, split)
    cfg = loaded.cfg or Config()
    d = cfg.data
    if split == "test":
        n = data.test_labels.numel()
        s = splits_for(data.train_labels, data.test_labels, d, val_size=0, train_subset=None, val_subset=None,
                       test_subset=max_images if max_images is not None and max_images < n else None)
        return data.test_images[s.test]
    sub = max_images if max_images is not None and max_images < d.val_size else None
    s = splits_for(data.train_labels, data.test_labels, d, train_subset=None, val_subset=sub, test_subset=None)
    return data.train_images[s.val]


def profile_responses(loaded: Loaded, data, split: str = "test", max_images: int | None = None,
                      batch_size: int = 250) -> ResponseProfile:
    images = evaluation_images(loaded, data, split, max_images)
    dev = next(loaded.model.parameters()).device
    # channels_last: ~1.5x faster eval on CPU, as in `reslab eval`; the statistics do not depend on the layout.
    model = loaded.model.to(memory_format=torch.channels_last)
    batches = (loaded.normalizer(images[i:i + batch_size].to(dev)).contiguous(memory_format=torch.channels_last)
               for i in range(0, images.shape[0], batch_size))
    names, std, pooled = layer_stds(model, batches)
    return ResponseProfile(loaded.label, loaded.model_name, loaded.group, loaded.depth, str(loaded.path),
                           loaded.iteration, split, int(images.shape[0]), names, std, pooled)


def load_targets(targets: list[str | Path], which: str, device: torch.device) -> list[Loaded]:
    """Run directories (their final or best weights), checkpoint files and published weights by name (NAME or
    NAME@SOURCE), labelled by run name, model name, or the published name as given."""
    found = []
    for t in targets:
        ckpt, path = load_checkpoint_source(str(t), which)
        if Path(t).is_dir():
            label = Path(t).name
        elif ckpt.get("kind") == "published":
            label = str(t)  # as typed: resnet20 and resnet20@reslab stay apart
        else:
            label = ckpt["model"]["name"]
        found.append((label, ckpt, path))
    labels = unique_labels([f[0] for f in found])
    return [loaded_from_checkpoint(ckpt, path, lab, device) for lab, (_, ckpt, path) in zip(labels, found)]


def measure_responses(targets: list[str | Path], *, split: str = "test", data_dir: str | None = None,
                      max_images: int | None = None, which: str = "last", device: str = "cpu",
                      data_cache: DataCache | None = None,
                      announce: Callable[[str], None] | None = None) -> list[ResponseProfile]:
    """`announce` gets one line saying what is measured, once every input has been checked and the data read."""
    if split not in SPLITS:
        raise ReslabError(f"--split {split!r} is not allowed; use {' or '.join(SPLITS)}")
    check_positive("--max-images", max_images)
    cache = data_cache or DataCache(data_dir)
    loaded = load_targets(targets, which, resolve_device(device))
    for lo in loaded:
        check_split(lo, split)
        cache.get(lo.cfg)  # the data each needs, read (and checked) before any measuring
    if announce:
        at_most = f", at most {max_images:,} images" if max_images else ""
        announce(f"measuring the layer responses of {len(loaded)} model(s) on the {split} split{at_most} ...")
    return [profile_responses(lo, cache.get(lo.cfg), split, max_images) for lo in loaded]


# ---- outputs --------------------------------------------------------------------------------------------------

SOURCE_MARKERS = (".", "s", "^", "D", "v")


def plot_responses(profiles: list[ResponseProfile], path: Path, title: str | None = None) -> Path:
    """Fig. 7 layout: std in layer order (top) and sorted in descending order (bottom), saved to `path`."""
    return save_figure(responses_figure(profiles, title), Path(path))


def responses_figure(profiles: list[ResponseProfile], title: str | None = None):
    """The Fig. 7 figure: both panels with a legend (each is read on its own) and whole-number layer ticks."""
    depths = [p.depth for p in profiles]
    nets = [(p.group, p.depth) for p in profiles]
    # The same net from several sources (resnet20 against resnet20@reslab) would share one colour: then each
    # profile takes its own palette colour and marker instead, so the lines never depend on the legend's order.
    same_net = len(set(nets)) < len(nets)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5))
    # Shallow nets first in the legend, plain before residual at each depth: pairs read side by side.
    for i, p in enumerate(sorted(profiles, key=lambda p: (p.depth or 0, p.group != "plain", p.label))):
        color = DEPTH_PALETTE[i % len(DEPTH_PALETTE)] if same_net else model_color(p.group, p.depth, depths)
        marker = SOURCE_MARKERS[i % len(SOURCE_MARKERS)] if same_net else "."
        style = dict(color=color, ls=line_style(p.group), lw=1.6, label=p.label)
        x = range(1, len(p.std) + 1)
        top.plot(x, p.std, marker=marker, ms=4, **style)
        bottom.plot(x, sorted(p.std, reverse=True), **style)
    top.set_xlabel("layer index (original order)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax, where in ((top, "upper left"), (bottom, "upper right")):
        ax.set_ylabel("std of response")
        ax.set_ylim(bottom=0)
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2, loc=where, title="dashed: plain, solid: ResNet", title_fontsize=8)
    p0 = profiles[0]
    fig.suptitle(title or f"Std of 3x3 layer responses after BN ({p0.split} split, {p0.images} images; "
                          f"cf. He et al. 2016, Fig. 7)", fontsize=10)
    fig.tight_layout()
    return fig


CSV_FIELDS = ("label", "model", "group", "depth", "iteration", "split", "images", "layer_index", "layer", "std",
              "std_pooled", "rank", "source")


def write_responses_csv(profiles: list[ResponseProfile], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for p in profiles:
            # rank 1 = largest response of this network (the bottom panel's x position)
            order = sorted(range(len(p.std)), key=lambda i: -p.std[i])
            rank = {i: r + 1 for r, i in enumerate(order)}
            for i, (name, s, sp) in enumerate(zip(p.layers, p.std, p.std_pooled)):
                w.writerow([p.label, p.model_name, p.group, p.depth, p.iteration, p.split, p.images, i + 1, name,
                            f"{s:.6g}", f"{sp:.6g}", rank[i], p.source])
    return Path(path)
