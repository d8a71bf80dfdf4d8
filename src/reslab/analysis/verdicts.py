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

Paired verdicts. When the runs stored their per-image correctness (correct.json, engine/correct.py) and the
caller names the split a claim is measured on, `compare` also pairs the two models image by image: the
discordant images (b: only the model expected to be worse gets it wrong; c: only the other one does) go into
McNemar's exact test, one-sided in the claim's direction (p = P(X >= b), X ~ Binomial(b + c, 1/2)). With several
seeds the per-seed tables are combined stratified (b and c summed over seeds, then the same exact test) and the
seed-to-seed yardstick above must be passed as well. A report's claims form one family: `holm` adjusts their p
values, and a paired claim is reproduced only when its direction holds and its adjusted p is below FAMILY_ALPHA.
One seed measures two trained networks, not run-to-run variance; the wording says so (ONE_SEED_CAVEAT).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from reslab import ReslabError
from reslab.engine.correct import Correctness
from reslab.study.results import ModelResult, mean_std


# What a verdict comes to, in one word each: True, False, None within noise, None for want of runs.
MARKS = ("reproduced", "not reproduced", "not separable", "not assessed")

# The family level of a report's paired claims (Holm-adjusted): a claim the paper makes is called reproduced here
# only when chance would produce a difference this one-sided this often at most 1 time in 100.
FAMILY_ALPHA = 0.01
ONE_SEED_CAVEAT = "these two trained networks differ — run-to-run variance needs seeds"


@dataclass
class Verdict:
    claim: str                 # short and distinct within a report: "Degradation (plain56 vs plain20)", ...
    text: str
    reproduced: bool | None    # None: not assessed, or within noise
    assessed: bool = True      # False: the runs needed to answer it are missing (see not_assessed)
    comparison: "Comparison | None" = None  # what it was decided on (reports print its paired test)

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
    paired: "Paired | None" = None  # the image-by-image test, when both models stored their correctness

    @property
    def diff(self) -> float:
        return self.a - self.b

    @property
    def holds(self) -> bool:
        return self.diff > 0

    @property
    def separable(self) -> bool:
        """Beyond the yardstick; with a paired test, also in the claim's direction below FAMILY_ALPHA (adjusted)."""
        if self.paired is not None:
            spread_ok = self.noise is None or abs(self.diff) > self.noise
            return spread_ok and self.holds and self.paired.adjusted < FAMILY_ALPHA
        return self.noise is None or abs(self.diff) > self.noise


@dataclass
class Paired:
    """The image-by-image test of a claim "A errs more than B" on one split, stratified over `seeds` seeds."""

    split: str
    b: int                     # images only A (the model expected to be worse) gets wrong, summed over seeds
    c: int                     # images only B gets wrong
    images: int                # images per seed
    seeds: int
    p_adjusted: float | None = None  # set by `holm` across a report's claims; None: the claim is its own family

    @property
    def p(self) -> float:
        return mcnemar_p(self.b, self.c)

    @property
    def adjusted(self) -> float:
        return self.p if self.p_adjusted is None else self.p_adjusted

    @property
    def reverse_adjusted(self) -> float:
        """The one-sided p of the opposite claim (B errs more than A), scaled by the factor Holm gave this claim:
        below FAMILY_ALPHA, the claim is contradicted, not merely unseparated."""
        factor = self.adjusted / self.p if self.p > 0 else 1.0
        return min(1.0, mcnemar_p(self.c, self.b) * factor)


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly: the sum of C(n, j) for j >= k over 2^n, in integers."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    term = math.comb(n, k)
    total = 0
    for j in range(k, n + 1):  # C(n, j + 1) = C(n, j) (n - j) / (j + 1), exact
        total += term
        term = term * (n - j) // (j + 1)
    return total / (1 << n)  # int / int: correctly rounded, however large


def mcnemar_p(b: int, c: int) -> float:
    """McNemar's exact test, one-sided: how likely b or more of the b + c discordant images fall on A's side if
    the two models were equally good (1.0 when there is no discordant image)."""
    if b < 0 or c < 0:
        raise ReslabError(f"discordant counts must be >= 0, got b={b}, c={c}")
    return binomial_tail(b, b + c)


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p values, in the order given: the i-th smallest is multiplied
    by (m - i + 1), kept monotone, capped at 1."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def discordant(a: Correctness, b: Correctness) -> tuple[int, int]:
    """(images only `a` gets wrong, images only `b` gets wrong). Vectors of different splits are refused."""
    if a.split != b.split or a.digest != b.digest or a.n != b.n:
        raise ReslabError(f"cannot pair per-image correctness of different images: {a.split} ({a.n} images, "
                          f"split {a.digest[:12]}) vs {b.split} ({b.n} images, split {b.digest[:12]}); only "
                          f"vectors of the same split are paired")
    mask = (1 << a.n) - 1
    return (~a.right & b.right & mask).bit_count(), (a.right & ~b.right & mask).bit_count()


def paired_vectors(a: ModelResult, b: ModelResult, split: str) -> list[tuple[Correctness, Correctness]]:
    """The (A, B) correctness of `split` for every seed both finished and stored it, by seed."""
    mine = {r.seed: r.correct[split] for r in a.finished if split in r.correct}
    theirs = {r.seed: r.correct[split] for r in b.finished if split in r.correct}
    return [(mine[s], theirs[s]) for s in sorted(mine) if s in theirs]


def paired_test(pairs: list[tuple[Correctness, Correctness]]) -> Paired:
    """The stratified paired test over seeds: discordant counts summed over the per-seed tables."""
    counts = [discordant(x, y) for x, y in pairs]
    return Paired(pairs[0][0].split, sum(b for b, _ in counts), sum(c for _, c in counts), pairs[0][0].n,
                  len(pairs))


def holm_family(comparisons: list["Comparison | None"]) -> None:
    """Holm across a report's paired claims: sets each paired test's adjusted p (the unpaired ones are left)."""
    tests = [c.paired for c in comparisons if c is not None and c.paired is not None]
    for t, adj in zip(tests, holm([t.p for t in tests])):
        t.p_adjusted = adj


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


def compare(a: ModelResult, b: ModelResult, key: str, images: tuple[int | None, int | None] | None = None,
            split: str | None = None) -> Comparison | None:
    """A's final `key` against B's (means over finished seeds); `images` = how many images each was measured
    on, for the one-seed yardstick. With `split` (test, val, train_probe) and the per-image correctness of that
    split stored by both, the numbers are the error rates on that split, paired image by image (`paired_compare`).
    None when either has no finished value."""
    pairs = paired_vectors(a, b, split) if split else []
    if pairs:
        return paired_compare(pairs)
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


def paired_compare(pairs: list[tuple[Correctness, Correctness]]) -> Comparison:
    """The error rates (%) of the paired vectors (means over seeds), the paired test, and with several seeds the
    seed-to-seed yardstick as well."""
    ea = [100.0 * x.errors / x.n for x, _ in pairs]
    eb = [100.0 * y.errors / y.n for _, y in pairs]
    (va, sa, n), (vb, sb, _) = mean_std(ea), mean_std(eb)
    if va is None or vb is None:
        raise ValueError("paired_compare needs at least one pair of correctness vectors")
    test = paired_test(pairs)
    if sa is None or sb is None:
        return Comparison(va, vb, None, f"McNemar's exact test on {test.images:,} {split_words(test.split)}, "
                                        f"one seed", test)
    return Comparison(va, vb, 2 * math.sqrt(sa ** 2 / n + sb ** 2 / n),
                      f"2 standard errors of the seed-to-seed spread ({n} seeds) and McNemar's exact test "
                      f"stratified over the seeds on {test.images:,} {split_words(test.split)}", test)


def split_words(split: str) -> str:
    """What a split's images are, in words."""
    return {"test": "test images", "val": "validation images",
            "train_probe": "training images (the train probe: eval mode, no augmentation)"}.get(split, split)


def judge(c: Comparison) -> tuple[str, bool | None]:
    """The verdict word for a comparison whose claim is "A is above B", and whether it reproduced."""
    if c.paired is not None:
        return judge_paired(c)
    if not c.separable:
        return (f"not separable at this budget: the {abs(c.diff):.1f}-point difference is within "
                f"±{c.noise:.1f} points ({c.why})"), None
    return ("reproduced", True) if c.holds else ("not reproduced", False)


def judge_paired(c: Comparison) -> tuple[str, bool | None]:
    """A paired claim: reproduced when it holds beyond the yardstick with Holm-adjusted p < FAMILY_ALPHA."""
    t = c.paired
    if t is None:
        raise ValueError("judge_paired needs a comparison with a paired test (judge words the others)")
    counts = (f"b = {t.b:,} vs c = {t.c:,} discordant images, p = {fmt_p(t.p)}, Holm-adjusted {fmt_p(t.adjusted)}; "
              f"{c.why}")
    if c.separable:
        caveat = f" ({ONE_SEED_CAVEAT})" if t.seeds == 1 else ""
        return f"reproduced{caveat} [{counts}]", True
    if c.diff == 0:
        why = "no difference"
    elif not c.holds and t.reverse_adjusted < FAMILY_ALPHA and (c.noise is None or abs(c.diff) > c.noise):
        return (f"not reproduced: the opposite holds, adjusted p {fmt_p(t.reverse_adjusted)} for it "
                f"[{counts}]"), False
    elif not c.holds:
        why = "the difference goes the other way"
    elif t.adjusted >= FAMILY_ALPHA:
        why = f"adjusted p {fmt_p(t.adjusted)} is not below the family level {FAMILY_ALPHA:g}"
    else:
        why = f"the {abs(c.diff):.1f}-point difference is within ±{c.noise:.1f} points of the seed-to-seed spread"
    return f"not separable at this budget: {why} [{counts}]", None


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


@dataclass
class Claim:
    """A claim compared but not yet worded: its family's Holm adjustment comes first (`decide`)."""

    name: str                                   # Verdict.claim
    comparison: Comparison
    words: Callable[[Comparison, str], str]     # the sentence, from the comparison and the engine's word


def decide(items: list["Claim | Verdict"]) -> list[Verdict]:
    """A report's claims as verdicts, in order: Holm across their paired tests, then `judge` each (the items
    that are already verdicts, e.g. not assessed, stay as they are)."""
    holm_family([x.comparison for x in items if isinstance(x, Claim)])
    out = []
    for x in items:
        if isinstance(x, Claim):
            word, ok = judge(x.comparison)
            x = Verdict(x.name, x.words(x.comparison, word), ok, comparison=x.comparison)
        out.append(x)
    return out


def not_assessed(claim: str, needs: str) -> Verdict:
    return Verdict(claim, f"{claim}: needs {needs} — not assessed.", None, assessed=False)
