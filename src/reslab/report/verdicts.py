"""Verdicts in plain words, computed from the numbers (never written by hand).

Each verdict compares final numbers (means over seeds). With several seeds a difference smaller than the
seed-to-seed spread is called out as within noise, and the verdict says "not established" instead of
"reproduced".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reslab.report.collect import ModelResult


@dataclass
class Verdict:
    claim: str          # "Degradation", "Residual cure", ...
    text: str
    reproduced: bool | None  # None: could not be assessed


def _noise(a: ModelResult, b: ModelResult, key: str) -> float | None:
    _, sa, na = a.stat(key)
    _, sb, nb = b.stat(key)
    if sa is None or sb is None:
        return None
    return math.sqrt(sa ** 2 / na + sb ** 2 / nb)  # std of the difference of two means


def _compare(higher: ModelResult, lower: ModelResult, key: str):
    """(value of `higher`, value of `lower`, difference, holds, within_noise)."""
    h, _, _ = higher.stat(key)
    lo, _, _ = lower.stat(key)
    if h is None or lo is None:
        return None
    diff = h - lo
    noise = _noise(higher, lower, key)
    within = noise is not None and abs(diff) <= 2 * noise
    return h, lo, diff, diff > 0, within


def _word(holds: bool, within: bool) -> tuple[str, bool | None]:
    if within:
        return "not established (within 2 standard errors of seed-to-seed noise)", None
    return ("reproduced", True) if holds else ("not reproduced", False)


def degradation(models: list[ModelResult]) -> Verdict:
    plains = sorted((m for m in models if m.group == "plain" and m.finished), key=lambda m: m.depth)
    if len(plains) < 2:
        return Verdict("Degradation", "Degradation: needs two finished plain nets of different depth — not assessed.",
                       None)
    shallow, deep = plains[0], plains[-1]
    h, lo, diff, holds, within = _compare(deep, shallow, "train_error")
    word, ok = _word(holds, within)
    rel = "higher" if holds else "lower (or equal)"
    return Verdict("Degradation", f"Degradation: {deep.model} ends with {rel} training error than {shallow.model} "
                   f"({h:.1f}% vs {lo:.1f}%) — {word}.", ok)


def residual_cure(models: list[ModelResult]) -> list[Verdict]:
    out = []
    by = {(m.group, m.depth): m for m in models if m.finished}
    for depth in sorted({d for g, d in by if g == "plain" and ("resnet", d) in by}):
        plain, res = by[("plain", depth)], by[("resnet", depth)]
        h, lo, diff, holds, within = _compare(plain, res, "train_error")
        word, ok = _word(holds, within)
        te_p, te_r = plain.stat("test_error")[0], res.stat("test_error")[0]
        if holds:
            text = (f"Residual cure at depth {depth}: {res.model} ends below {plain.model} by {diff:.1f} points of "
                    f"training error ({lo:.1f}% vs {h:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
        else:
            text = (f"Residual cure at depth {depth}: {res.model} does not end below {plain.model} "
                    f"(training error {lo:.1f}% vs {h:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
        out.append(Verdict("Residual cure", text, ok))
    return out


def depth_helps_resnets(models: list[ModelResult]) -> Verdict:
    res = sorted((m for m in models if m.group == "resnet" and m.finished), key=lambda m: m.depth)
    if len(res) < 2:
        return Verdict("Depth helps ResNets", "Deeper ResNets: needs two finished ResNets — not assessed.", None)
    shallow, deep = res[0], res[-1]
    h, lo, diff, holds, within = _compare(shallow, deep, "test_error")
    word, ok = _word(holds, within)
    if holds:
        text = (f"Deeper ResNets do better: {deep.model} ends with lower test error than {shallow.model} "
                f"({lo:.1f}% vs {h:.1f}%) — {word}.")
    else:
        text = (f"Deeper ResNets do better: {deep.model} does not beat {shallow.model} on test error "
                f"({lo:.1f}% vs {h:.1f}%) — {word}" + (" at this budget; the paper's 64k-iteration schedule "
                                                      "is needed for that." if not within else "."))
    return Verdict("Depth helps ResNets", text, ok)


def all_verdicts(models: list[ModelResult]) -> list[Verdict]:
    return [degradation(models), *residual_cure(models), depth_helps_resnets(models)]
