"""Report figures of a study (matplotlib through reslab.plotting: Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path

from reslab.config import resolve_schedule
from reslab.data import n_train_images
from reslab.engine.schedule import LRSchedule
from reslab.plotting import depth_colors, plt, save_figure
from reslab.study.results import ModelResult, Study

GROUP_TITLES = {"plain": "plain networks", "resnet": "residual networks (ResNets)"}


def curve(m: ModelResult, key: str):
    """(iterations, mean over seeds) of a metrics column; only iterations every finished seed reached.
    Training loss/error come from the dense curve (train_log.csv) when every run has one."""
    runs = [r for r in m.runs if r.rows]
    if not runs:
        return [], []
    dense = key.startswith("train_") and all(r.train_log for r in runs)
    tables = [r.train_log if dense else r.rows for r in runs]
    common = sorted(set.intersection(*[{row["iteration"] for row in t if row.get(key) is not None}
                                       for t in tables]))
    ys = []
    for it in common:
        vals = [next(row[key] for row in t if row["iteration"] == it) for t in tables]
        ys.append(sum(vals) / len(vals))
    return common, ys


def figure6(study: Study, out: Path, groups=("plain", "resnet")) -> Path:
    """The paper's Fig. 6: training error (dashed) and test error (bold) vs iterations, plain | residual."""
    models = study.models()
    colors = depth_colors(m.depth for m in models)
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.4), sharey=True, squeeze=False)
    ymax = 0
    for ax, group in zip(axes[0], groups):
        for m in sorted((m for m in models if m.group == group), key=lambda m: m.depth or 0):
            c = colors.get(m.depth, "k")
            x, tr = curve(m, "train_error")
            x2, te = curve(m, "test_error")
            if x:
                ax.plot(x, tr, "--", color=c, lw=1.4)
            if x2:
                ax.plot(x2, te, "-", color=c, lw=2.6, label=f"{m.model}")
            ymax = max([ymax, *tr, *te])
        ax.set_title(GROUP_TITLES.get(group, group))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="bold: test, dashed: train", fontsize=9, title_fontsize=9)
    axes[0][0].set_ylabel("error (%)")
    axes[0][0].set_ylim(0, min(100, ymax * 1.05 + 1))
    fig.suptitle("Training on CIFAR-10 (cf. He et al. 2016, Fig. 6)")
    fig.tight_layout()
    return save_figure(fig, out / "figure6.png")


def pair_curves(study: Study, out: Path) -> Path:
    """Per depth: training loss (left) and test error (right), plainN vs resnetN."""
    models = {m.model: m for m in study.models()}
    depths = sorted({m.depth for m in models.values() if m.depth is not None})
    fig, axes = plt.subplots(len(depths), 2, figsize=(11, 3.2 * len(depths)), squeeze=False)
    for row, d in enumerate(depths):
        for col, (key, label) in enumerate((("train_loss", "training loss"), ("test_error", "test error (%)"))):
            ax = axes[row][col]
            for m in (x for x in models.values() if x.depth == d):
                it, y = curve(m, key)
                style = "-" if m.group == "resnet" else "--"
                ax.plot(it, y, style, lw=2, color="tab:blue" if m.group == "resnet" else "tab:red", label=m.model)
            ax.set_title(f"depth {d}: {label}")
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "pairs.png")


def lr_schedule(study: Study, out: Path) -> Path:
    """The learning rate at every iteration, recomputed from the study's config (the schedule is a pure
    function of the iteration; a constant warm-up that ends on a training-error threshold is drawn from the
    iteration each run recorded)."""
    cfg = study.spec.config()
    sched = resolve_schedule(cfg, n_train_images(cfg.data))
    fig, ax = plt.subplots(figsize=(6.4, 3))
    curves = {}
    for m in study.models():
        lrs = LRSchedule(cfg, sched, m.depth)
        key = tuple(lrs.lr(i) for i in range(sched.iterations))
        curves.setdefault(key, []).append(m.model)
    for ys, names in curves.items():
        label = "all models" if len(curves) == 1 else ", ".join(names)
        ax.plot(range(len(ys)), ys, lw=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedule")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out / "lr.png")


def confusion(matrix: list[list[int]], classes: list[str], title: str, out: Path) -> Path:
    """A heat map; with up to 10 classes every cell is labelled, with more (CIFAR-100) the axes count classes."""
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 10:
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        top = max(max(r) for r in matrix) or 1
        for i, r in enumerate(matrix):
            for j, v in enumerate(r):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    else:
        ax.set_xlabel(f"predicted class (0 to {len(classes) - 1}, in the data set's order)")
        ax.set_ylabel(f"true class (0 to {len(classes) - 1})")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, out / "confusion.png")
