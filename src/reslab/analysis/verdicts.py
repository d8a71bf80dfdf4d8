"""The one verdict engine: is model A's final number above model B's, and by more than the noise?

Every verdict reslab writes about a study compares two models' final numbers (means over seeds) with `compare`
and words the outcome with `judge`, so the same situation always reads the same way:

* several seeds on both sides: the yardstick is 2 standard errors of the difference of the two means (the
  seed-to-seed spread);
* one seed, and the caller says how many images each number was measured on: 2 standard errors of binomial
  sampling noise on those images (a lower bound on the real noise: run-to-run variation is not measured);
* otherwise there is no yardstick and every difference counts.

A difference within the yardstick is "not separable at this budget" (reproduced = None), never "reproduced".
Every Verdict carries one of four MARKS (`Verdict.mark`), the word a report's summary shows for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from reslab.study.results import ModelResult


# What a verdict comes to, in one word each: True, False, None within noise, None for want of runs.
MARKS = ("reproduced", "not reproduced", "not separable", "not assessed")


@dataclass
class Verdict:
    claim: str                 # short and distinct within a report: "Degradation (plain56 vs plain20)", ...
    text: str
    reproduced: bool | None    # None: not assessed, or within noise
    assessed: bool = True      # False: the runs needed to answer it are missing (see not_assessed)

    @property
    def mark(self) -> str:
        """One of MARKS."""
        if not self.assessed:
            return "not assessed"
        return {True: "reproduced", False: "not reproduced", None: "not separable"}[self.reproduced]


@dataclass
class Comparison:
    a: float                   # model A's value (the one expected to be higher)
    b: float                   # model B's value
    noise: float | None        # the yardstick |a - b| must exceed (None: none available)
    why: str                   # what the yardstick is, in words

    @property
    def diff(self) -> float:
        return self.a - self.b

    @property
    def holds(self) -> bool:
        return self.diff > 0

    @property
    def separable(self) -> bool:
        return self.noise is None or abs(self.diff) > self.noise


def seed_noise(a: ModelResult, b: ModelResult, key: str) -> float | None:
    """Standard error of the difference of the two means over seeds (None unless both have a spread)."""
    _, sa, na = a.stat(key)
    _, sb, nb = b.stat(key)
    if sa is None or sb is None:
        return None
    return math.sqrt(sa ** 2 / na + sb ** 2 / nb)


def sampling_se(p: float, n: int | None) -> float | None:
    """Binomial standard error (in points) of an error rate of p% measured on n images."""
    if not n:
        return None
    q = min(max(p / 100, 0.0), 1.0)
    return 100 * math.sqrt(max(q * (1 - q), 1e-12) / n)


def compare(a: ModelResult, b: ModelResult, key: str, images: tuple[int | None, int | None] | None = None
            ) -> Comparison | None:
    """A's final `key` against B's (means over finished seeds); `images` = how many images each was measured
    on, for the one-seed yardstick. None when either has no finished value."""
    va, _, na = a.stat(key)
    vb, _, nb = b.stat(key)
    if va is None or vb is None:
        return None
    noise = seed_noise(a, b, key)
    if noise is not None:
        return Comparison(va, vb, 2 * noise, f"2 standard errors of the seed-to-seed spread ({min(na, nb)} seeds)")
    if images is not None:
        sa, sb = sampling_se(va, images[0]), sampling_se(vb, images[1])
        if sa is not None and sb is not None:
            return Comparison(va, vb, 2 * math.sqrt(sa ** 2 + sb ** 2),
                              f"2 standard errors of sampling noise on {images[0]:,} images; one seed, "
                              f"run-to-run noise not measured")
    return Comparison(va, vb, None, "")


def judge(c: Comparison) -> tuple[str, bool | None]:
    """The verdict word for a comparison whose claim is "A is above B", and whether it reproduced."""
    if not c.separable:
        return (f"not separable at this budget: the {abs(c.diff):.1f}-point difference is within "
                f"±{c.noise:.1f} points ({c.why})"), None
    return ("reproduced", True) if c.holds else ("not reproduced", False)


def not_assessed(claim: str, needs: str) -> Verdict:
    return Verdict(claim, f"{claim}: needs {needs} — not assessed.", None, assessed=False)
