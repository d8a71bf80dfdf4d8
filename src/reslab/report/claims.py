"""The paper's claims as functions of model pairs, shared by every report kind: degradation (a deeper plain net
trains worse), the residual cure (at one depth, the ResNet trains better than its plain twin) and depth helps
ResNets (the deeper ResNet tests better). Each report picks its pairs (by group and depth, or by name) and
calls these; the verdict engine (reslab.analysis.verdicts) judges each comparison against the report's yardstick
(report.sections.compare_models)."""
from __future__ import annotations

from reslab.analysis.verdicts import Verdict, judge
from reslab.report.sections import compare_models
from reslab.study.results import ModelResult, Study


def degradation(study: Study, shallow: ModelResult, deep: ModelResult) -> Verdict:
    """The deeper plain net ends with higher training error than the shallower one."""
    c = compare_models(study, deep, shallow, "train_error")
    word, ok = judge(c)
    rel = "higher" if c.holds else "lower (or equal)"
    return Verdict(f"Degradation ({deep.model} vs {shallow.model})",
                   f"Degradation: {deep.model} ends with {rel} training error than {shallow.model} "
                   f"({c.a:.1f}% vs {c.b:.1f}%) — {word}.", ok)


def residual_cure(study: Study, plain: ModelResult, res: ModelResult, depth: int) -> Verdict:
    """At `depth`, the ResNet ends with lower training error than its plain twin."""
    c = compare_models(study, plain, res, "train_error")
    word, ok = judge(c)
    te_p, te_r = plain.stat("test_error")[0], res.stat("test_error")[0]
    if c.holds:
        text = (f"Residual cure at depth {depth}: {res.model} ends below {plain.model} by {c.diff:.1f} points of "
                f"training error ({c.b:.1f}% vs {c.a:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
    else:
        text = (f"Residual cure at depth {depth}: {res.model} does not end below {plain.model} "
                f"(training error {c.b:.1f}% vs {c.a:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
    return Verdict(f"Residual cure at depth {depth}", text, ok)


def depth_helps_resnets(study: Study, shallow: ModelResult, deep: ModelResult, longer: str = "") -> Verdict:
    """The deeper ResNet ends with lower test error than the shallower one. `longer`: what a separable miss
    needs (e.g. "the paper's 64k-iteration schedule"), said after it as "at this budget; ... is needed"."""
    c = compare_models(study, shallow, deep, "test_error")
    word, ok = judge(c)
    if c.holds:
        text = (f"Deeper ResNets do better: {deep.model} ends with lower test error than {shallow.model} "
                f"({c.b:.1f}% vs {c.a:.1f}%) — {word}.")
    else:
        tail = f" at this budget; {longer} is needed for that." if longer and c.separable else "."
        text = (f"Deeper ResNets do better: {deep.model} does not beat {shallow.model} on test error "
                f"({c.b:.1f}% vs {c.a:.1f}%) — {word}" + tail)
    return Verdict(f"Deeper ResNets do better ({deep.model} vs {shallow.model})", text, ok)
