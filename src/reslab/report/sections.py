"""Report sections that every study kind shows the same way: per-class accuracy and the best model's confusion
matrix, both from the test evaluations each finished run wrote (summed or averaged over seeds)."""
from __future__ import annotations

from pathlib import Path

from reslab.data import CLASSES
from reslab.report import figures
from reslab.report.collect import ModelResult
from reslab.report.document import Figure, Heading, Table


def _test_evals(m: ModelResult) -> list[dict]:
    return [r.test_eval for r in m.finished if r.test_eval]


def per_class_section(models: list[ModelResult]) -> list:
    """A table of per-class test accuracy, one row per model (mean over its seeds); empty if nothing evaluated."""
    rows = []
    for m in models:
        evals = _test_evals(m)
        if evals:
            rows.append([m.model, *[f"{sum(e['per_class'][c] for e in evals) / len(evals):.1f}" for c in CLASSES]])
    return [Heading("Per-class test accuracy (%)"), Table(["model", *CLASSES], rows)] if rows else []


def confusion_section(best: ModelResult | None, out: Path, figs: dict) -> list:
    """The confusion matrix of `best` (summed over its seeds) as a figure; records it in figs["confusion"]."""
    evals = _test_evals(best) if best is not None else []
    if not evals:
        return []
    mat = [[sum(e["confusion"][i][j] for e in evals) for j in range(10)] for i in range(10)]
    figs["confusion"] = figures.confusion(mat, f"{best.model}: test confusion matrix", out)
    return [Heading(f"Confusion matrix of the best model ({best.model})"),
            Figure(figs["confusion"], f"Rows: true class; columns: predicted ({sum(map(sum, mat))} test "
                   f"images{', summed over seeds' if len(evals) > 1 else ''}).")]
