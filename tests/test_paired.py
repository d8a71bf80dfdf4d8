"""Paired verdicts: McNemar's exact test, Holm's correction, per-image correctness stored by runs and paired by
the one verdict engine."""
import math

import pytest
import torch

from reslab import ReslabError
from reslab.analysis.verdicts import (FAMILY_ALPHA, Comparison, Paired, binomial_tail, discordant, holm, judge,
                                      mcnemar_p)
from reslab.engine.correct import Correctness, read_correct, split_digest


def vector(split, bits, digest=None):
    right = torch.tensor([bool(b) for b in bits])
    return Correctness.from_tensor(split, digest or split_digest("test", torch.arange(len(bits))), right)


# ---- McNemar's exact test --------------------------------------------------------------------------------------

@pytest.mark.parametrize("b, c, p", [
    (5, 0, 1 / 32),             # all 5 discordant images on the claimed side: 2^-5
    (3, 1, 5 / 16),             # P(X >= 3 | 4): (C(4,3) + C(4,4)) / 16
    (6, 2, 37 / 256),           # (C(8,6) + C(8,7) + C(8,8)) / 256 = (28 + 8 + 1) / 256
    (1, 3, 15 / 16),            # the other direction: the one-sided p is large
    (0, 4, 1.0),
    (2, 2, 11 / 16),            # a tie: P(X >= 2 | 4) = (6 + 4 + 1) / 16
])
def test_mcnemar_exact_against_hand_computed_cases(b, c, p):
    assert mcnemar_p(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_without_discordant_images_is_one():
    assert mcnemar_p(0, 0) == 1.0


def test_mcnemar_is_one_sided_in_the_claims_direction():
    assert mcnemar_p(40, 10) < 1e-4 < 0.999 < mcnemar_p(10, 40)
    # P(X >= 40) + P(X >= 10) = 1 + P(X = 40) for X ~ Binomial(50, 1/2): the two tails overlap on one point
    assert mcnemar_p(40, 10) + mcnemar_p(10, 40) == pytest.approx(1 + math.comb(50, 40) / 2 ** 50, rel=1e-12)


@pytest.mark.parametrize("b, c", [(5200, 4800), (2600, 2400), (4990, 5010), (330, 270), (9000, 8700)])
def test_mcnemar_large_n_matches_scipy(b, c):
    stats = pytest.importorskip("scipy.stats")
    ref = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert mcnemar_p(b, c) == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_binomial_tail_edges():
    assert binomial_tail(0, 10) == 1.0 and binomial_tail(11, 10) == 0.0 and binomial_tail(10, 10) == 2.0 ** -10
    with pytest.raises(ReslabError, match="b=-1"):
        mcnemar_p(-1, 3)


# ---- Holm ------------------------------------------------------------------------------------------------------

def test_holm_on_a_hand_computed_case():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> kept monotone at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.2]) == [0.2] and holm([]) == []


# ---- pairing ---------------------------------------------------------------------------------------------------

def test_discordant_counts_each_side():
    a = vector("test", [1, 0, 0, 1, 1, 0, 1, 1, 0])  # right on 0, 3, 4, 6, 7
    b = vector("test", [1, 1, 0, 0, 1, 1, 1, 0, 0])  # right on 0, 1, 4, 5, 6
    assert discordant(a, b) == (2, 2)    # only a wrong: 1, 5; only b wrong: 3, 7
    assert discordant(a, a) == (0, 0)
    worse = vector("test", [0] * 9)
    assert discordant(worse, b) == (5, 0)


def test_misaligned_vectors_are_refused():
    a = vector("test", [1, 0, 1, 1])
    other_images = vector("test", [1, 0, 1, 1], digest=split_digest("test", torch.tensor([0, 1, 2, 5])))
    with pytest.raises(ReslabError, match="cannot pair") as e:
        discordant(a, other_images)
    assert "\n" not in str(e.value)
    with pytest.raises(ReslabError, match="cannot pair"):
        discordant(a, vector("test", [1, 0, 1]))                  # another length
    with pytest.raises(ReslabError, match="cannot pair"):
        discordant(a, vector("val", [1, 0, 1, 1], digest=a.digest))  # another split's name
    # the digest names which CIFAR set the indices point into: the same indices of train and test differ
    assert split_digest("train", torch.arange(4)) != split_digest("test", torch.arange(4))


def test_correctness_round_trips_through_its_json_form():
    bits = (torch.arange(1003) % 7 != 3)
    c = Correctness.from_tensor("test", split_digest("test", torch.arange(1003)), bits)
    d = c.as_dict()
    assert d["n"] == 1003 and d["errors"] == int((~bits).sum())
    back = read_correct({"format": "reslab-correct/1", "iteration": 5, "splits": {"test": d}})["test"]
    assert back == c
    with pytest.raises(ReslabError, match="reslab-correct/1"):
        read_correct({"format": "something/2"})


# ---- the verdict engine's word for a paired claim ---------------------------------------------------------------

def paired_comparison(a, b, bb, cc, seeds=1, noise=None, adjusted=None):
    return Comparison(a, b, noise, "why", Paired("test", bb, cc, 1000, seeds, adjusted))


def test_paired_claim_reproduced_only_in_its_direction_below_the_family_level():
    word, ok = judge(paired_comparison(20.0, 15.0, 80, 30))
    assert ok is True and word.startswith("reproduced") and "run-to-run variance needs seeds" in word
    assert "b = 80 vs c = 30" in word
    word, ok = judge(paired_comparison(15.0, 20.0, 30, 80))   # the other way, clearly: contradicted
    assert ok is False and word.startswith("not reproduced: the opposite holds")
    word, ok = judge(paired_comparison(19.0, 20.0, 38, 40))   # the other way, within chance: not separable
    assert ok is None and "other way" in word
    word, ok = judge(paired_comparison(20.0, 15.0, 80, 30, adjusted=0.02))  # Holm lifted it above the family level
    assert ok is None and f"family level {FAMILY_ALPHA:g}" in word
    word, ok = judge(paired_comparison(20.0, 15.0, 80, 30, seeds=3, noise=6.0))  # within the seed spread
    assert ok is None and "seed-to-seed" in word
    word, ok = judge(paired_comparison(20.0, 15.0, 80, 30, seeds=3, noise=2.0))
    assert ok is True and "needs seeds" not in word


# ---- runs store their per-image correctness -----------------------------------------------------------------

def test_correct_json_survives_a_resume_at_an_evaluation_point_bit_identically(tiny_cfg, tmp_path):
    from reslab.engine import train
    from reslab.engine.runs import read_json, read_metrics

    cfg = lambda: tiny_cfg(**{"data.train_probe": 100})  # noqa: E731
    ref = train(cfg(), runs_dir=tmp_path / "ref", quiet=True)
    ref_mid = train(cfg(), runs_dir=tmp_path / "mid", quiet=True, stop_after=11)  # latest evaluation: iteration 10
    run = train(cfg(), runs_dir=tmp_path / "cut", quiet=True, stop_after=10)  # eval_every 5: stopped, eval pending
    assert read_json(run / "summary.json")["evaluation_pending"] is True
    assert read_json(run / "correct.json")["iteration"] == 5
    train(resume=run, quiet=True, stop_after=1)  # the pending evaluation runs first
    assert (run / "correct.json").read_bytes() == (ref_mid / "correct.json").read_bytes()
    train(resume=run, quiet=True)
    assert (run / "correct.json").read_bytes() == (ref / "correct.json").read_bytes()

    doc = read_json(ref / "correct.json")
    assert doc["format"] == "reslab-correct/1" and doc["iteration"] == 20
    vectors = read_correct(doc)
    assert list(vectors) == ["test", "val", "train_probe"]
    assert (vectors["test"].n, vectors["val"].n, vectors["train_probe"].n) == (60, 50, 100)
    final = read_metrics(ref / "metrics.csv")[-1]
    assert vectors["test"].errors == round(final["test_error"] * 60 / 100)
    assert vectors["val"].errors == round(final["val_error"] * 50 / 100)
    probe = read_json(ref / "summary.json")["final"]["train_probe_error"]
    assert vectors["train_probe"].errors == round(probe * 100 / 100)
    assert "train_probe" not in read_json(ref_mid / "correct.json")["splits"]  # the probe: final point only


def test_the_train_probe_is_a_fixed_class_balanced_part_of_the_training_split():
    from reslab.config import ConfigError, load_config
    from reslab.data import make_splits

    labels = torch.arange(2000) % 10
    test_labels = torch.arange(100) % 10
    s = make_splits(labels, test_labels, val_size=200, split_seed=0, train_probe=500)
    assert s.probe.numel() == 500 and torch.bincount(labels[s.probe]).tolist() == [50] * 10
    assert set(s.probe.tolist()) <= set(s.train.tolist()) and not set(s.probe.tolist()) & set(s.val.tolist())
    again = make_splits(labels, test_labels, val_size=200, split_seed=0, train_probe=500)
    assert torch.equal(s.probe, again.probe)  # fixed: the same images for every run (and seed) of a study
    assert torch.equal(make_splits(labels, test_labels, val_size=200, split_seed=0, train_probe=5000).probe, s.train)
    assert make_splits(labels, test_labels, val_size=200, split_seed=0).probe.numel() == 0
    with pytest.raises(ConfigError, match=r"data.train_probe=0 is not allowed; must be a positive integer or null"):
        load_config(None, {"data.train_probe": 0})


# ---- the report ------------------------------------------------------------------------------------------------

def test_the_report_of_a_tiny_study_shows_the_paired_tests(tiny_degradation_report):
    md, verdicts = tiny_degradation_report["md"].read_text(), tiny_degradation_report["verdicts"]
    section = md[md.index("## Paired tests"):]
    assert "| claim | measured on | images | difference (points) | b | c | p | Holm p | verdict |" in section
    assert f"family level {FAMILY_ALPHA:g}" in section and "Fig. 7 claims are not in this family" in section
    paired = {v.claim: v.comparison.paired for v in verdicts if v.comparison is not None}
    assert set(paired) == {"Degradation (plain14 vs plain8)", "Residual cure at depth 8", "Residual cure at depth 14",
                           "Deeper ResNets do better (resnet14 vs resnet8)"}
    assert paired["Degradation (plain14 vs plain8)"].split == "train_probe"
    assert paired["Deeper ResNets do better (resnet14 vs resnet8)"].split == "test"
    assert paired["Deeper ResNets do better (resnet14 vs resnet8)"].images == 40  # data.test_subset=40
    assert [t.adjusted for t in paired.values()] == pytest.approx(holm([t.p for t in paired.values()]))
    for claim, t in paired.items():
        assert f"| {claim} |" in section and f"| {t.b:,} | {t.c:,} |" in section
    assert "these two trained networks differ" in md  # one seed: worded for what it is
    assert "- train probe: 250 training images (data.train_probe" in md  # the protocol names it


def test_runs_without_stored_correctness_report_as_before(tiny_degradation_study, tmp_path):
    import shutil

    from reslab.report import write_report

    study = tmp_path / "old"
    shutil.copytree(tiny_degradation_study, study)
    for f in study.glob("runs/*/correct.json"):
        f.unlink()  # a study made before runs stored their per-image correctness
    out = write_report(study)
    md = out["md"].read_text()
    assert "## Paired tests" not in md and "sampling noise" in md
    assert all(v.comparison is None or v.comparison.paired is None for v in out["verdicts"])


def test_several_seeds_combine_stratified_and_keep_the_seed_spread():
    from reslab.analysis.verdicts import compare
    from reslab.study.results import ModelResult, RunResult

    def model(name, per_seed_bits):
        runs = [RunResult(f"{name}-s{s}", name, "resnet", 8, s, "finished", {"final": {"test_error": 0.0}}, [], None,
                          None, correct={"test": vector("test", bits)}) for s, bits in enumerate(per_seed_bits)]
        return ModelResult(name, "resnet", 8, runs)

    worse = model("a", [[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    better = model("b", [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 1]])
    c = compare(worse, better, "test_error", split="test")
    # per seed (b, c): (2, 1), (1, 0), (2, 0) -> summed (5, 1), then one exact test
    assert (c.paired.b, c.paired.c, c.paired.seeds, c.paired.images) == (5, 1, 3, 6)
    assert c.paired.p == pytest.approx(mcnemar_p(5, 1)) == pytest.approx(7 / 64)
    assert c.a == pytest.approx(100 * 6 / 18) and c.b == pytest.approx(100 * 2 / 18)  # means over seeds
    assert c.noise is not None and "seed-to-seed spread (3 seeds)" in c.why  # the spread stays a yardstick
    # a seed only one side finished is left out of the pairing
    better.runs.pop()
    assert compare(worse, better, "test_error", split="test").paired.seeds == 2
