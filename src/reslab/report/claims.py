"""The paper's claims as functions of model pairs, shared by every report kind: degradation (a deeper plain net
trains worse), the residual cure (at one depth, the ResNet trains better than its plain twin) and depth helps
ResNets (the deeper ResNet tests better). Each report picks its pairs (by group and depth, or by name), calls
these and hands the claims to `verdicts.decide`, which applies Holm across the report's paired tests and words
each with the one engine's `judge`. Training-error claims are paired on the train probe (eval mode, no
augmentation), the test-error claim on the test set; runs without stored correctness fall back to the report's
unpaired yardstick (report.sections.compare_models)."""
from __future__ import annotations

from reslab.analysis.verdicts import Claim
from reslab.report.sections import compare_models
from reslab.study.results import ModelResult, Study


def degradation(study: Study, shallow: ModelResult, deep: ModelResult) -> Claim:
    """The deeper plain net ends with higher training error than the shallower one."""
    def words(c, word):
        rel = "higher" if c.holds else "lower (or equal)"
        return (f"Degradation: {deep.model} ends with {rel} training error than {shallow.model} "
                f"({c.a:.1f}% vs {c.b:.1f}%) — {word}.")
    return Claim(f"Degradation ({deep.model} vs {shallow.model})",
                 compare_models(study, deep, shallow, "train_error", split="train_probe"), words)


def residual_cure(study: Study, plain: ModelResult, res: ModelResult, depth: int) -> Claim:
    """At `depth`, the ResNet ends with lower training error than its plain twin."""
    te_p, te_r = plain.stat("test_error")[0], res.stat("test_error")[0]

    def words(c, word):
        if c.holds:
            return (f"Residual cure at depth {depth}: {res.model} ends below {plain.model} by {c.diff:.1f} points "
                    f"of training error ({c.b:.1f}% vs {c.a:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
        return (f"Residual cure at depth {depth}: {res.model} does not end below {plain.model} "
                f"(training error {c.b:.1f}% vs {c.a:.1f}%; test {te_r:.1f}% vs {te_p:.1f}%) — {word}.")
    return Claim(f"Residual cure at depth {depth}",
                 compare_models(study, plain, res, "train_error", split="train_probe"), words)


def depth_helps_resnets(study: Study, shallow: ModelResult, deep: ModelResult, longer: str = "") -> Claim:
    """The deeper ResNet ends with lower test error than the shallower one. `longer`: what a clear miss needs
    (e.g. "the paper's 64k-iteration schedule"), said after it as "at this budget; ... is needed"."""
    def words(c, word):
        if c.holds:
            return (f"Deeper ResNets do better: {deep.model} ends with lower test error than {shallow.model} "
                    f"({c.b:.1f}% vs {c.a:.1f}%) — {word}.")
        missed = word.startswith("not reproduced")
        tail = f" at this budget; {longer} is needed for that." if longer and missed else "."
        return (f"Deeper ResNets do better: {deep.model} does not beat {shallow.model} on test error "
                f"({c.b:.1f}% vs {c.a:.1f}%) — {word}" + tail)
    return Claim(f"Deeper ResNets do better ({deep.model} vs {shallow.model})",
                 compare_models(study, shallow, deep, "test_error", split="test"), words)
