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
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["plt", "save_figure", "model_color", "depth_colors", "line_style", "contrast_ratio",
           "integer_ticks", "DEPTH_PALETTE"]


def save_figure(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


# One colour per depth where depth, not plain/residual, tells lines apart (Fig. 6): dark, distinct hues, each at
# >= 3:1 contrast on white (the light end of viridis, used before, was 1.7:1 and hard to see).
DEPTH_PALETTE = ("#332288", "#117733", "#AA4499", "#996600", "#0F7B8A", "#882255", "#555555")


def depth_colors(depths) -> dict:
    """{depth: colour} for the depths given, shallowest first (the palette repeats past its length)."""
    depths = sorted({d for d in depths if d is not None})
    return {d: DEPTH_PALETTE[i % len(DEPTH_PALETTE)] for i, d in enumerate(depths)}


def model_color(group: str, depth: int | None, all_depths) -> tuple:
    """Plain nets red, ResNets blue, darker for deeper; the lightest shade still >= 3:1 on white."""
    depths = sorted({d for d in all_depths if d is not None})
    i = depths.index(depth) if depth in depths else 0
    shade = 0.65 + 0.3 * i / max(len(depths) - 1, 1)
    return plt.get_cmap("Reds" if group == "plain" else "Blues")(shade)


def integer_ticks(axis) -> None:
    """Ticks at whole numbers only (layer indices, counts): never "2.5" on an axis of layers."""
    axis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # 0, 10, 20 — not 0, 6, 12


def line_style(group: str) -> str:
    return "--" if group == "plain" else "-"


def contrast_ratio(a, b="white") -> float:
    """WCAG contrast ratio of two colours (any matplotlib colour spec): 1 (none) to 21 (black on white). Lines
    and badges are kept at >= 3 on white (WCAG's bar for graphics), text at >= 4.5."""
    def luminance(c):
        rgb = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in matplotlib.colors.to_rgb(c)]
        return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
