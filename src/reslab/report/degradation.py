"""The degradation study's report: plain vs residual nets of several depths (the paper's Fig. 6 / Table 6).

Its verdict questions (degradation, the residual cure at each depth, deeper ResNets do better) are the shared
claims of reslab.report.claims, asked of its plain/ResNet pairs and answered by the one verdict engine
(reslab.analysis.verdicts) from the final numbers, with the seed-to-seed spread as the yardstick when there are
several seeds and the sampling noise of the images measured with one (as every report kind:
report.sections.compare_models).
"""
from __future__ import annotations

from pathlib import Path

from reslab import layout
from reslab.analysis.verdicts import Claim, Verdict, decide, not_assessed
from reslab.data import DATASETS
from reslab.models.paper import TABLE6_TEST_ERROR
from reslab.report import claims, figures
from reslab.report.document import Bullets, Document, Figure, Heading, Para, Table
from reslab.report.sections import (analysis_section, basis_note, confusion_section, fmt,
                                    median_rate, paired_section, per_class_section, protocol_items, ranking_section,
                                    throughput_note, verdict_blocks)
from reslab.study import degradation as study_kind
from reslab.study.results import ModelResult, Study, load_study, mean_std

KIND = study_kind.NAME  # the study kind this module reports on


# ---- verdict questions ------------------------------------------------------------------------------------------
# Training-error claims are measured on the train probe (eval mode, no augmentation) and test-error claims on the
# test set, paired image by image when the runs stored their correctness (correct.json); older runs are compared
# on their final numbers as before (the running training error, the test error).

def degradation(study: Study, models: list[ModelResult]) -> Claim | Verdict:
    plains = sorted((m for m in models if m.group == "plain" and m.finished), key=lambda m: m.depth)
    if len(plains) < 2:
        return not_assessed("Degradation", "two finished plain nets of different depth")
    return claims.degradation(study, plains[0], plains[-1])


def residual_cure(study: Study, models: list[ModelResult]) -> list[Claim]:
    by = {(m.group, m.depth): m for m in models if m.finished}
    return [claims.residual_cure(study, by[("plain", d)], by[("resnet", d)], d)
            for d in sorted({d for g, d in by if g == "plain" and ("resnet", d) in by})]


def depth_helps_resnets(study: Study, models: list[ModelResult]) -> Claim | Verdict:
    res = sorted((m for m in models if m.group == "resnet" and m.finished), key=lambda m: m.depth)
    if len(res) < 2:
        return not_assessed("Deeper ResNets do better", "two finished ResNets")
    return claims.depth_helps_resnets(study, res[0], res[-1], longer="the paper's 64k-iteration schedule")


def all_verdicts(study: Study) -> list[Verdict]:
    """The Fig. 6 claims, decided together by the one engine (Holm across their paired tests)."""
    models = study.models()
    return decide([degradation(study, models), *residual_cure(study, models), depth_helps_resnets(study, models)])


def paper_section(study, finished: list[ModelResult]) -> list:
    """Our ResNets' test errors beside the paper's Table 6 (CIFAR-10 only: a CIFAR-100 study says so)."""
    cfg = study.spec.config()
    if cfg.data.dataset != "cifar10":
        return [Heading("Against the paper"), Para(f"The paper reports CIFAR-10 only; there is no {cfg.data.dataset} "
                                                   "number of it to compare with.")]
    paper_protocol = study.spec.profile == "paper"
    rows = []
    for m in sorted((m for m in finished if m.group == "resnet"), key=lambda m: m.depth):
        ref = TABLE6_TEST_ERROR.get(m.depth)
        rows.append([m.model, fmt(*m.stat("test_error")), f"{ref:.2f}" if ref else "–"])
    if rows:
        note = ("Same protocol as the paper (single runs of ours vs the paper's)." if paper_protocol else
                "**Paper protocol only**: the paper's numbers come from 64k iterations on 45k images and the full "
                f"test set; this study ran the {study.spec.profile} profile ({cfg.data.test_subset or 10000} test "
                "images, far fewer iterations), so the columns are not comparable — they are shown for context.")
        return [Heading("Against the paper (Table 6, ResNets)"),
                Table(["model", "ours: test err %", "paper: test err %"], rows), Para(note)]
    return []


# ---- the document ----------------------------------------------------------------------------------------------

def _results_table(models: list[ModelResult]) -> Table:
    rows = []
    for m in sorted(models, key=lambda m: (m.group != "plain", m.depth or 0)):
        n = len(m.finished)
        if n == 0:
            rows.append([m.model, str(m.depth), "–", *(["–"] * 7), f"{m.runs[0].status}"])
            continue
        bv = mean_std([r.summary.best["val_error"] for r in m.finished if r.summary.best])
        bt = mean_std([r.summary.best["test_error"] for r in m.finished if r.summary.best])
        rows.append([
            m.model, str(m.depth), f"{m.finished[0].summary.parameters:,}",
            fmt(*m.stat("train_loss"), digits=4), fmt(*m.stat("train_error")), f"**{fmt(*m.stat('test_error'))}**",
            f"{fmt(*bv)} ({fmt(*bt)})", fmt(*m.summary_stat("wall_seconds"), digits=0),
            fmt(median_rate(m), digits=0), f"{n} finished"
            + (f", {len(m.runs) - n} not" if len(m.runs) > n else "")])
    return Table(["model", "depth", "params", "final train loss", "final train err %", "final test err %",
                  "best val err % (test there)", "wall s", "median img/s", "runs"], rows)


def build_report(study_dir: Path) -> tuple[Document, dict]:
    study = load_study(study_dir)
    out = layout.report_dir(study_dir)
    models = study.models()
    finished = [m for m in models if m.finished]
    seeds = max((len(m.runs) for m in models), default=1)
    dataset = DATASETS[study.spec.config().data.dataset].title
    doc = Document(f"Degradation study: plain vs residual networks on {dataset} ({study.spec.profile} profile)")

    verdicts = all_verdicts(study)
    analysis, fig7 = analysis_section(study, out, max_images=1000)  # Fig. 7 and gradient flow; empty if none finished
    paired = paired_section(verdicts)
    doc.add(*verdict_blocks(verdicts, fig7),
            Para(basis_note(seeds, paired=bool(paired))), *paired)
    doc.add(Heading("Protocol"), Bullets(protocol_items(study)))

    figs = {}
    if any(r.rows for r in study.runs):
        figs["figure6"] = figures.figure6(study, out)
        figs["pairs"] = figures.pair_curves(study, out)
        figs["lr"] = figures.lr_schedule(study, out)
        doc.add(Heading("Training curves (the paper's Figure 6)"),
                Figure(figs["figure6"], "Training error (dashed; mean over each window of train.log_every "
                       "iterations, on augmented images) and test error (bold) vs iterations; left plain nets, right "
                       "ResNets, same axes, one colour per depth."),
                Figure(figs["pairs"], "Per pair: training loss and test error, plainN (red, dashed) vs resnetN "
                       "(blue)."),
                Figure(figs["lr"], "Learning rate at every iteration (one schedule for every model)."))

    doc.add(Heading("Results"), _results_table(models),
            Para("Final = at the end of training. Training error is measured during training (augmented images, "
                 "train-mode BN), as in the paper's curves. Best = the evaluation point with the lowest "
                 "**validation** error; the test error at that point is shown beside it — the test set never "
                 "selects anything. " + throughput_note(models)))

    ranked = sorted(finished, key=lambda m: m.stat("test_error")[0])
    doc.add(*ranking_section(study, ranked))

    doc.add(*paper_section(study, finished))

    doc.add(*per_class_section(sorted(finished, key=lambda m: (m.group != "plain", m.depth))))
    doc.add(*confusion_section(ranked[0] if ranked else None, out, figs))
    doc.add(*analysis)
    doc.add(Heading("Files"), Para("Every run's directory under runs/ holds its config, metrics.csv, summary.json, "
                                   "checkpoints and, with train.loggers: [tensorboard], TensorBoard events: "
                                   f"`tensorboard --logdir {study.path}`."))
    return doc, {"figures": figs, "verdicts": verdicts + fig7}
