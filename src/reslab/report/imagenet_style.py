"""The report of `reslab study imagenet-style`: plain18/34, resnet18/34 and resnet18_ms on CIFAR-10.

Same building blocks as the degradation report (collect -> numbers, document -> md + html, figures, the
analysis section), its own figures; the degradation, residual-cure and depth verdicts are the shared claims of
reslab.report.claims asked of the 18/34-layer pairs, the multi-scale one its own. Every verdict is computed from
the final numbers and says when a difference is too small
to mean anything: with several seeds against the seed-to-seed spread; with one seed against the sampling noise
of the images the number was measured on (a binomial standard error — a lower bound on the real noise, since
it ignores run-to-run variation).
"""
from __future__ import annotations

from pathlib import Path

from reslab import layout
from reslab.analysis.verdicts import Verdict, decide, judge, not_assessed
from reslab.config import from_flat, validate
from reslab.models import count_macs, count_params, create_model, model_kwargs
from reslab.models.paper import TABLE2_TOP1
from reslab.plotting import DEPTH_PALETTE, model_color, plt, save_figure
from reslab.report import claims, figures
from reslab.report.document import Bullets, Document, Figure, Heading, Para, Table
from reslab.report.sections import (analysis_section, basis_note, compare_models, confusion_section, median_rate,
                                    per_class_section, protocol_items, ranking_section, throughput_note,
                                    verdict_blocks)
from reslab.study import imagenet_style as study_kind
from reslab.study.results import ModelResult, Study, load_study, mean_std

KIND = study_kind.NAME  # the study kind this module reports on
ORDER = ("plain18", "plain34", "resnet18", "resnet34", "resnet18_ms")
# plotting's palette, as every figure: plain nets red, ResNets blue, darker for deeper; resnet18_ms green (each
# >= 3:1 on white)
COLORS = {**{f"{group}{depth}": model_color(group, depth, (18, 34))
             for group in ("plain", "resnet") for depth in (18, 34)},
          "resnet18_ms": DEPTH_PALETTE[1]}


# ---------------------------------------------------------------- numbers

def verdicts(study: Study) -> list[Verdict]:
    """The shared claims (reslab.report.claims) of the 18/34-layer pairs, and the multi-scale question, decided
    together by the one engine (Holm across their paired tests)."""
    by = {m.model: m for m in study.models() if m.finished}
    p18, p34, r18, r34 = (by.get(n) for n in ("plain18", "plain34", "resnet18", "resnet34"))
    out = [claims.degradation(study, p18, p34) if p18 and p34 else
           not_assessed("Degradation (plain34 vs plain18)", "finished runs of plain18 and plain34"),
           claims.depth_helps_resnets(study, r18, r34) if r18 and r34 else
           not_assessed("Deeper ResNets do better (resnet34 vs resnet18)", "finished runs of resnet18 and resnet34"),
           multi_scale(study, by)]
    if p34 and r34:
        out.append(claims.residual_cure(study, p34, r34, 34))
    return decide(out)


def multi_scale(study: Study, by: dict[str, ModelResult]) -> Verdict:
    """resnet18_ms against resnet34 on test error (and, said beside it, against resnet18)."""
    ms, r18, r34 = by.get("resnet18_ms"), by.get("resnet18"), by.get("resnet34")
    if not (ms and r34):
        return not_assessed("Multi-scale (resnet18_ms vs resnet34)", "finished runs of resnet18_ms and resnet34")
    c = compare_models(study, r34, ms, "test_error")
    word, ok = judge(c)
    verb = "beats" if c.holds else "does not beat"
    extra = ""
    if r18:
        c18 = compare_models(study, r18, ms, "test_error")
        extra = (f"; against resnet18 it is {'better' if c18.holds else 'not better'} "
                 f"({c18.b:.1f}% vs {c18.a:.1f}%" + ("" if c18.separable else ", within noise") + ")")
    return Verdict("Multi-scale (resnet18_ms vs resnet34)",
                   f"Multi-scale (resnet18_ms vs resnet34): resnet18_ms {verb} resnet34 on "
                   f"test error ({c.b:.1f}% vs {c.a:.1f}%){extra} — {word}.", ok)


# ---------------------------------------------------------------- figures

def _plot_models(ax, models: dict, names, key: str, title: str):
    for name in names:
        m = models.get(name)
        if m is None:
            continue
        it, y = figures.curve(m, key)
        if it:
            ax.plot(it, y, "--" if name.startswith("plain") else "-", lw=2, color=COLORS.get(name), label=name)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9)


def loss_pairs(study: Study, out: Path) -> Path:
    """Training and validation loss: plain18 vs plain34 (top), resnet18 vs resnet34 (bottom)."""
    models = {m.model: m for m in study.models()}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2), squeeze=False)
    for row, pair in enumerate((("plain18", "plain34"), ("resnet18", "resnet34"))):
        for col, (key, label) in enumerate((("train_loss", "training loss"), ("val_loss", "validation loss"))):
            _plot_models(axes[row][col], models, pair, key, f"{pair[0]} vs {pair[1]}: {label}")
    fig.tight_layout()
    return save_figure(fig, out / "loss_pairs.png")


def error_curves(study: Study, out: Path) -> Path:
    """Validation error: plain18 vs plain34, resnet18 vs resnet34, and all five together."""
    models = {m.model: m for m in study.models()}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True, squeeze=False)
    _plot_models(axes[0][0], models, ("plain18", "plain34"), "val_error", "plain18 vs plain34")
    _plot_models(axes[0][1], models, ("resnet18", "resnet34"), "val_error", "resnet18 vs resnet34")
    _plot_models(axes[0][2], models, ORDER, "val_error", "all five")
    axes[0][0].set_ylabel("validation error (%)")
    fig.tight_layout()
    return save_figure(fig, out / "val_error.png")


def ms_curves(study: Study, out: Path) -> Path:
    """resnet18_ms against resnet18 and resnet34: training loss, validation loss, validation error."""
    models = {m.model: m for m in study.models()}
    names = ("resnet18", "resnet34", "resnet18_ms")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], (("train_loss", "training loss"), ("val_loss", "validation loss"),
                                          ("val_error", "validation error (%)"))):
        _plot_models(ax, models, names, key, label)
    fig.suptitle("resnet18_ms against resnet18 and resnet34")
    fig.tight_layout()
    return save_figure(fig, out / "ms.png")


# ---------------------------------------------------------------- document

def _fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


def _model_cost(study: Study, name: str) -> tuple[int, int] | None:
    """(parameters, MACs at 32x32) of `name` built exactly as the study's runs build it."""
    try:
        cfg = validate(from_flat({"model.name": name}, study.spec.config()))
        m = create_model(name, **model_kwargs(cfg))
        return count_params(m), count_macs(m, (3, 32, 32))
    except Exception:  # a report never fails on a cost column
        return None


def _results(study: Study, models: list[ModelResult]) -> Table:
    rows = []
    for m in models:
        cost = _model_cost(study, m.model)
        params = f"{cost[0]:,}" if cost else "–"
        macs = f"{cost[1] / 1e6:.1f}M" if cost else "–"
        if not m.finished:
            rows.append([m.model, params, macs, *(["–"] * 7), m.runs[0].status])
            continue
        bv = mean_std([r.summary.best["val_error"] for r in m.finished if r.summary.best])
        bt = mean_std([r.summary.best["test_error"] for r in m.finished if r.summary.best])
        rows.append([m.model, params, macs, _fmt(m.stat("train_loss")[0], 4), _fmt(m.stat("train_error")[0]),
                     _fmt(m.stat("val_loss")[0], 4), _fmt(m.stat("val_error")[0]),
                     f"**{_fmt(m.stat('test_error')[0])}**", f"{_fmt(bv[0])} ({_fmt(bt[0])})",
                     _fmt(m.summary_stat("wall_seconds")[0], 0) + f" / {_fmt(median_rate(m), 0)}"])
    return Table(["model", "params", "MACs @32", "train loss", "train err %", "val loss", "val err %",
                  "test err %", "best val err % (test there)", "wall s / median img/s"], rows)


def _protocol(study: Study) -> list[str]:
    cfg = study.spec.config()
    width, stem = cfg.model.width or 64, cfg.model.stem or "cifar"
    items = protocol_items(study)
    items.insert(1, f"models: the ImageNet-style nets (He et al. 2016, Table 1) with the {stem} stem and stage "
                    f"widths {width}/{2 * width}/{4 * width}/{8 * width}"
                 + (" — **reduced from the standard 64/128/256/512** to fit the CPU budget; depth and topology "
                    "are unchanged" if width != 64 else " (the standard widths)"))
    return items


def build_report(study_dir: Path) -> tuple[Document, dict]:
    study = load_study(study_dir)
    out = layout.report_dir(study_dir)
    by = {m.model: m for m in study.models()}
    models = [by[n] for n in ORDER if n in by] + [m for n, m in by.items() if n not in ORDER]
    finished = [m for m in models if m.finished]
    seeds = max((len(m.runs) for m in models), default=1)
    cfg = study.spec.config()
    doc = Document(f"ImageNet-style nets on CIFAR-10: plain/ResNet-18/34 and ResNet-18-MS "
                   f"({study.spec.profile} profile)")

    vs = verdicts(study)
    analysis, fig7 = analysis_section(study, out, max_images=1000)  # Fig. 7 and gradient flow; empty if none finished
    doc.add(*verdict_blocks(vs, fig7),
            Para(basis_note(seeds)
                 + (" **This profile is a short, reduced-width CPU run: verdicts marked not separable say that "
                    "it cannot tell these models apart, not that they are equal.**" if study.spec.profile == "quick"
                    else "")))
    doc.add(Heading("Protocol"), Bullets(_protocol(study)))

    figs = {}
    if any(r.rows for r in study.runs):
        figs["loss_pairs"] = loss_pairs(study, out)
        figs["val_error"] = error_curves(study, out)
        figs["ms"] = ms_curves(study, out)
        figs["lr"] = figures.lr_schedule(study, out)
        doc.add(Heading("Training and validation loss: 18 vs 34 layers"),
                Figure(figs["loss_pairs"], "Top: plain18 vs plain34; bottom: resnet18 vs resnet34. Left training "
                       "loss (mean over each window of train.log_every iterations: augmented images, train-mode BN), "
                       "right validation loss."),
                Heading("Validation error"),
                Figure(figs["val_error"], "Validation error vs iterations: the plain pair, the residual pair, all "
                       "five models."),
                Heading("ResNet-18-MS against ResNet-18 and ResNet-34"),
                Figure(figs["ms"], "resnet18_ms (green) against resnet18 and resnet34: training loss, validation "
                       "loss, validation error."),
                Figure(figs["lr"], "Learning-rate schedule."))

    doc.add(Heading("Results"), _results(study, models),
            Para("Final = at the end of training. Best = the evaluation point with the lowest **validation** "
                 "error, with the test error there beside it; the test set selects nothing. Parameters and MACs "
                 "are of the nets as trained here (10 classes, this study's shortcut, stem and width). "
                 + throughput_note(models)))

    ranked = sorted(finished, key=lambda m: m.stat("test_error")[0])
    doc.add(*ranking_section(study, ranked, {"final val err %": lambda m: _fmt(m.stat("val_error")[0])}))

    doc.add(*per_class_section(finished))

    rows = []
    for name, ref in TABLE2_TOP1.items():
        m = by.get(name)
        ours = _fmt(m.stat("test_error")[0]) if m and m.finished else "–"
        rows.append([name, f"{ref:.2f}", ours])
    rows.append(["resnet18_ms", "– (not in the paper)",
                 _fmt(by["resnet18_ms"].stat("test_error")[0]) if "resnet18_ms" in by and by["resnet18_ms"].finished
                 else "–"])
    doc.add(Heading("Context: the paper's ImageNet numbers (Table 2) — ImageNet, not comparable"),
            Table(["model", "paper: ImageNet top-1 err % (10-crop)", "ours: CIFAR-10 test err %"], rows,
                  caption="ImageNet (paper) and CIFAR-10 (ours): different tasks, compare directions only"),
            Para("**ImageNet, not comparable.** The paper's column is ImageNet validation top-1 error with 10-crop "
                 "testing (1000 classes, 224x224 crops, up to 600k iterations at batch 256; option-A zero-padding "
                 "shortcuts, as here by default). Ours is CIFAR-10 under this study's protocol"
                 f" ({study.spec.profile} profile). Only the *direction* within each pair can be compared: in the "
                 "paper plain-34 is worse than plain-18 (degradation) and ResNet-34 is better than ResNet-18."))

    doc.add(*confusion_section(ranked[0] if ranked else None, out, figs))
    doc.add(*analysis)
    doc.add(Heading("Files"), Para("Every run's directory under runs/ holds its config, metrics.csv, summary.json and "
                                   "checkpoints. Models: docs/multiscale.md (resnet18_ms), `reslab models`."
                                   + (f" Test set: {cfg.data.test_subset:,} class-balanced images of the 10k."
                                      if cfg.data.test_subset else "")))
    return doc, {"figures": figs, "verdicts": vs + fig7}
