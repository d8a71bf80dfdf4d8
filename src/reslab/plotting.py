"""Plotting helpers every figure of reslab uses (matplotlib on the Agg backend: no display needed).

`save_figure` writes a figure atomically (a reader never sees half a PNG); `model_color` and `line_style` give
plain nets red dashed lines and ResNets blue solid ones, darker for deeper nets, so a plainN/resnetN pair reads
side by side in every figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figure", "model_color", "line_style"]


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def model_color(group: str, depth: int | None, all_depths) -> tuple:
    depths = sorted({d for d in all_depths if d is not None})
    i = depths.index(depth) if depth in depths else 0
    shade = 0.55 + 0.4 * i / max(len(depths) - 1, 1)
    return plt.get_cmap("Reds" if group == "plain" else "Blues")(shade)


def line_style(group: str) -> str:
    return "--" if group == "plain" else "-"
