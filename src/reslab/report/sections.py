"""Report sections that every study kind shows the same way: the protocol, per-class accuracy and the best
model's confusion matrix (from the test evaluations each finished run wrote, summed or averaged over seeds), and
the analysis of why residual learning works (Fig. 7 responses and gradient flow, measured on the runs)."""
from __future__ import annotations

from pathlib import Path
from statistics import median

from reslab import ReslabError, layout
from reslab.analysis.common import DataCache
from reslab.analysis.verdicts import FAMILY_ALPHA, Comparison, Verdict, compare, fmt_p, split_words
from reslab.analysis.findings import gradient_verdicts, response_verdicts
from reslab.analysis.gradients import has_snapshots, measure_gradients, plot_gradients, write_gradients_csv
from reslab.analysis.responses import measure_responses, plot_responses, write_responses_csv
from reslab.config import resolve_schedule
from reslab.data import n_train_images
from reslab.engine.schedule import shape_words
from reslab.report import figures
from reslab.report.document import Bullets, Figure, Heading, Marks, Para, Table
from reslab.study.budget import plan_line
from reslab.study.results import ModelResult, RunResult, Study


# ---- the yardstick every verdict and the ranking use ------------------------------------------------------------

def n_measured(study: Study, m: ModelResult, key: str) -> int | None:
    """How many images the final `key` of `m` was measured on (for the one-seed, sampling-noise yardstick)."""
    cfg = study.spec.config()
    if key == "test_error":
        evals = [r.test_eval for r in m.finished if r.test_eval and r.test_eval.get("n")]
        return evals[0]["n"] if evals else (cfg.data.test_subset or 10000)
    if key == "val_error":
        return cfg.data.val_subset or cfg.data.val_size
    if key == "train_error":  # the running error over the last evaluation interval
        rows = next((r.rows for r in m.finished if len(r.rows) >= 1), None)
        if not rows:
            return None
        prev = rows[-2]["iteration"] if len(rows) >= 2 else 0
        return (rows[-1]["iteration"] - prev) * cfg.train.batch_size
    return None


def compare_models(study: Study, worse: ModelResult, better: ModelResult, key: str,
                   split: str | None = None) -> Comparison | None:
    """The engine's comparison, with the one-seed yardstick: sampling noise on the images each was measured on;
    with `split`, paired image by image on that split where the runs stored their correctness."""
    return compare(worse, better, key, images=(n_measured(study, worse, key), n_measured(study, better, key)),
                   split=split)


def basis_note(seeds: int, paired: bool = False) -> str:
    """What every verdict of a report is computed from, and against which noise (`paired`: some verdicts were
    decided by paired tests, see paired_section)."""
    if paired:
        return ("Computed image by image where the runs stored their per-image correctness: training-error claims on "
                "the train probe (a fixed class-balanced set of training images, evaluated at the end in eval mode "
                "without augmentation), test-error claims on the test set; see Paired tests below. "
                + ("With several seeds a claim must also exceed two standard errors of the seed-to-seed spread."
                   if seeds > 1 else "With one seed a paired test shows that these two trained networks differ; "
                   "run-to-run variance needs seeds (--seeds 3)."))
    if seeds > 1:
        return (f"Computed from the final numbers below (means over {seeds} seeds); a difference is called separable "
                "only when it exceeds two standard errors of the seed-to-seed spread.")
    return ("Computed from the final numbers below (one seed per model). A difference is called separable only when "
            "it exceeds two standard errors of the sampling noise of the images it was measured on; run-to-run noise "
            "is not measured with one seed — rerun with --seeds 3 for that.")


def paired_section(verdicts: list[Verdict]) -> list:
    """The paired test behind each verdict that has one: difference, discordant counts, raw and Holm-adjusted p
    (empty when no verdict was paired: runs made before per-image correctness was stored)."""
    rows = []
    for v in verdicts:
        c = v.comparison
        if c is None or c.paired is None:
            continue
        t = c.paired
        rows.append([v.claim, split_words(t.split).split(" (")[0], f"{t.images:,}" + (f" x {t.seeds} seeds" if
                     t.seeds > 1 else ""), f"{c.diff:+.2f}", f"{t.b:,}", f"{t.c:,}", fmt_p(t.p), fmt_p(t.adjusted),
                     v.mark])
    if not rows:
        return []
    return [Heading("Paired tests"),
            Table(["claim", "measured on", "images", "difference (points)", "b", "c", "p", "Holm p", "verdict"],
                  rows, align="lllrrrrrl"),
            Para(f"b: images only the model the claim expects to be worse gets wrong; c: images only the other one "
                 f"gets wrong (summed over seeds). p: McNemar's exact test, one-sided in the claim's direction "
                 f"(P(X >= b), X ~ Binomial(b + c, 1/2)), stratified over seeds. Holm p: Holm's correction across "
                 f"these {len(rows)} claims at the family level {FAMILY_ALPHA:g}; a claim is reproduced when its "
                 f"direction holds and its Holm p is below {FAMILY_ALPHA:g} (and, with several seeds, its difference "
                 f"exceeds two standard errors of the seed-to-seed spread); not reproduced when the opposite holds as "
                 f"clearly; otherwise it is not separable. The Fig. 7 "
                 f"claims are not in this family: they count layers (analysis/findings.py) and keep their own "
                 f"criterion — a ResNet's responses smaller than its plain twin's in a majority of its layers, and the "
                 f"deeper ResNet's mean response smaller than the shallower one's.")]


def ranking_section(study: Study, ranked: list[ModelResult], extra: dict | None = None) -> list:
    """`ranked` (finished models, best first) by final test error. Each model is compared with the one above by
    the verdict engine, on the verdicts' yardstick: within noise it shares that rank, marked "=". `extra`: more
    columns, {header: function of the model -> cell}."""
    if not ranked:
        return []
    extra = extra or {}
    rows, whys, rank = [], [], 1
    for i, m in enumerate(ranked):
        c = compare_models(study, m, ranked[i - 1], "test_error") if i else None
        tied = c is not None and not c.separable
        rank = rank if tied or i == 0 else i + 1
        if c is None:
            note = ""
        elif tied:
            note = f"= within noise of {ranked[i - 1].model} (+{c.diff:.2f}, noise ±{c.noise:.2f})"
        else:
            note = f"+{c.diff:.2f}" + (f" (beyond ±{c.noise:.2f})" if c.noise is not None else "")
        whys += [c.why or "none: one seed and no image count — every difference counts"] if c else []
        rows.append([f"={rank}" if tied else str(rank), m.model, fmt(*m.stat("test_error")),
                     *(f(m) for f in extra.values()), note])
    table = Table(["rank", "model", "final test err %", *extra, "vs the one above"], rows,
                  align="rlr" + "r" * len(extra) + "l")
    yardstick = "; ".join(dict.fromkeys(whys))
    return [Heading("Ranking (best to worst final test error)"), table] + ([Para(
        f"Yardstick (the verdicts' own without paired tests): {yardstick}. A model within it of the one above "
        "shares that rank (=): the two are not separable at this budget, which is not evidence that they are "
        "equal.")] if whys else [])


# ---- training speed ---------------------------------------------------------------------------------------------

# A run whose per-interval training speed swings by more than this factor shared its machine with changing load:
# its mean img/s and wall time describe the load as much as the model.
RATE_SPREAD = 2.0


def interval_rates(run: RunResult) -> list[float]:
    """Training img/s of each evaluation interval of a run (metrics.csv), in order."""
    return [row["images_per_s"] for row in run.rows if row.get("images_per_s")]


def median_rate(m: ModelResult) -> float | None:
    """Median training img/s over every evaluation interval of the model's finished runs (None: none recorded).
    The median, not the mean: a loaded or an idle stretch of the machine moves it least."""
    rates = [x for r in m.finished for x in interval_rates(r)]
    return median(rates) if rates else None


def uneven_runs(models: list[ModelResult]) -> list[tuple[str, float, float]]:
    """(run, slowest, fastest interval img/s) of each finished run whose speed varied by more than RATE_SPREAD.
    With three intervals or more the first is left out: it carries the start-up (allocation, warm caches)."""
    out = []
    for m in models:
        for r in m.finished:
            rates = interval_rates(r)
            rates = rates[1:] if len(rates) >= 3 else rates
            if rates and min(rates) > 0 and max(rates) / min(rates) > RATE_SPREAD:
                out.append((r.name, min(rates), max(rates)))
    return out


def throughput_note(models: list[ModelResult]) -> str:
    """What the img/s column is, and which runs' speed it cannot be trusted for."""
    note = "img/s: the median over the run's evaluation intervals of training images per second."
    uneven = uneven_runs(models)
    if uneven:
        runs = ", ".join(f"{name} ({lo:.0f} to {hi:.0f} img/s)" for name, lo, hi in uneven)
        note += (f" **Throughput varied more than {RATE_SPREAD:g}x within a run: {runs}** — the machine's load changed "
                 "during the run, so its wall time and speed describe the load as much as the model.")
    return note


def _test_evals(m: ModelResult) -> list[dict]:
    return [r.test_eval for r in m.finished if r.test_eval]


def per_class_accuracy(m: ModelResult) -> dict[str, float]:
    """Test accuracy (%) per class of a model, mean over its evaluated seeds, in class order."""
    evals = _test_evals(m)
    return {c: sum(e["per_class"][c] for e in evals) / len(evals) for c in evals[0]["per_class"]} if evals else {}


def per_class_section(models: list[ModelResult]) -> list:
    """Per-class test accuracy, one row per model (mean over its seeds): a column per class for 10 classes; for
    more (CIFAR-100), the mean and the 10 worst and 10 best classes. Empty if nothing was evaluated."""
    accs = [(m, per_class_accuracy(m)) for m in models]
    accs = [(m, a) for m, a in accs if a]
    if not accs:
        return []
    classes = list(accs[0][1])
    if len(classes) <= 10:
        rows = [[m.model, *[f"{a[c]:.1f}" for c in classes]] for m, a in accs]
        return [Heading("Per-class test accuracy (%)"), Table(["model", *classes], rows)]
    rows = []
    for m, a in accs:
        ranked = sorted(a, key=a.get)
        rows.append([m.model, f"{sum(a.values()) / len(a):.1f}",
                     ", ".join(f"{c} {a[c]:.0f}" for c in ranked[:10]),
                     ", ".join(f"{c} {a[c]:.0f}" for c in ranked[-10:])])
    return [Heading(f"Per-class test accuracy (%) — {len(classes)} classes: the 10 worst and the 10 best"),
            Table(["model", "mean", "10 worst classes", "10 best classes"], rows)]


def confusion_section(best: ModelResult | None, out: Path, figs: dict) -> list:
    """The confusion matrix of `best` (summed over its seeds) as a figure; records it in figs["confusion"]."""
    evals = _test_evals(best) if best is not None else []
    if not evals:
        return []
    k = len(evals[0]["confusion"])
    mat = [[sum(e["confusion"][i][j] for e in evals) for j in range(k)] for i in range(k)]
    figs["confusion"] = figures.confusion(mat, list(evals[0]["per_class"]), f"{best.model}: test confusion matrix",
                                          out)
    return [Heading(f"Confusion matrix of the best model ({best.model})"),
            Figure(figs["confusion"], f"Rows: true class; columns: predicted ({sum(map(sum, mat))} test "
                   f"images{', summed over seeds' if len(evals) > 1 else ''}).")]


def fmt(mean, std=None, n=1, digits=2, suffix=""):
    if mean is None:
        return "–"
    s = f"{mean:.{digits}f}{suffix}"
    if std is not None and n > 1:
        s += f" ± {std:.{digits}f}"
    return s


def protocol_items(study: Study) -> list[str]:
    """The protocol section's bullets, common to every study kind."""
    cfg = study.spec.config()
    d, o, t = cfg.data, cfg.optim, cfg.train  # the runs' own schedule: the profile's, or a --budget plan's
    n_train = n_train_images(d)
    sched = resolve_schedule(cfg, n_train)
    seeds = sorted({r.seed for r in study.runs})
    items = [
        f"profile **{study.spec.profile}**; every run uses this one config, only `model.name` (and the seed) differ",
        f"{sched.iterations:,} iterations at batch {t.batch_size} ({sched.iterations / sched.steps_per_epoch:.2f} "
        f"epochs of {n_train:,} training images{' — a class-balanced subset' if d.train_subset else ''})",
        f"SGD lr {o.lr}, momentum {o.momentum}, weight decay {o.weight_decay}; {shape_words(cfg, sched)}"
        + (f"; {o.warmup} warm-up ({o.warmup_iterations} iterations)" if o.warmup != 'none' else ""),
        f"shortcut option {cfg.model.shortcut}; normalisation {d.normalization}; augmentation "
        f"{'pad ' + str(d.pad) + ' + random crop + flip' if d.augment else 'off'}",
        f"validation: {d.val_subset or d.val_size:,} images held out of the training set"
        f"{' (best is selected here, never on test)' if d.val_size else ''}; test: "
        f"{d.test_subset or 10000:,} {'class-balanced images of the 10k test set' if d.test_subset else 'test images'}",
        f"seeds: {', '.join(map(str, seeds))}",
    ]
    probed = [r for r in study.runs if "train_probe" in r.correct]
    if probed:
        items.append(f"train probe: {probed[0].correct['train_probe'].n:,} training images (data.train_probe: a "
                     f"fixed class-balanced subset, or the whole training split when that is smaller), evaluated at "
                     f"the end in eval mode without augmentation; the training-error verdicts are measured on it, "
                     f"the curves keep the running training error")
    if study.spec.plan:
        items.append(f"sized by `--budget {study.spec.plan.get('budget')}` when the study started: "
                     f"{plan_line(study.spec.plan)}")
        if study.spec.plan.get("shape"):
            items.append(f"shape chosen by the budget: **{study.spec.plan['shape']}** "
                         f"({study.spec.plan['shape_why']})")
    envs = [r.env for r in study.runs if r.env]
    auto = next((e["amp"] for e in envs if isinstance(e.get("amp"), dict)), None)  # what train.amp=auto chose
    used = auto["chose"] if auto else t.amp
    items.append(f"precision: {'fp32' if used == 'none' else used + ' autocast'}"
                 + (f" ({auto['why']})" if auto else ""))
    if envs:
        e = envs[0]
        items.append(f"ran on {e.get('device')} ({e.get('device_name', e.get('machine'))}, "
                     f"{e.get('threads')} threads), "
                     f"torch {e.get('torch')}, reslab {e.get('reslab')}"
                     + (f", git {e['git_commit'][:10]}" if e.get("git_commit") else ""))
    wall = sum(r.summary.wall_seconds or 0 for r in study.runs)
    items.append(f"total training wall time {wall / 60:.1f} min (sum over runs)")
    return items


def analysis_section(study: Study, out: Path, *, max_images: int = 1000, batch_size: int = 64,
                    device: str = "cpu") -> tuple[list, list[Verdict]]:
    """Report blocks: Fig. 7 responses of every finished run's final weights on `max_images` test images, and
    gradient norms at each snapshot on one batch of `batch_size` training images. Kept cheap because every
    report rebuild pays it: one eval pass over `max_images` per run and one forward/backward of `batch_size`
    images per snapshot (half of `reslab analyze gradients`' less noisy default of 128). A study whose runs kept
    no snapshots gets the responses
    only; one whose runs cannot be measured gets a line saying why, never a failed report. Also returns the Fig. 7
    verdicts, for the report's summary (the gradient-flow lines are diagnostics, not claims of the paper)."""
    runs = [layout.study_run_dir(study.path, r.name) for r in study.runs if r.status == "finished"]
    if not runs:
        return [], []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = DataCache()
    blocks: list = [Heading("Layer responses (the paper's Figure 7)")]
    found, claims = _measured(
        lambda: measure_responses(runs, max_images=max_images, device=device, data_cache=cache),
        plot_responses, write_responses_csv, response_verdicts, out / "responses",
        lambda resp: f"Std of each 3x3 layer's response (after BN, before ReLU/addition) of the final weights on "
                     f"{resp[0].images} {resp[0].split} images; top: layer order, bottom: sorted. Numbers: "
                     f"responses.csv.",
        empty="no plainN/resnetN pair to compare")
    blocks += [*found, Heading("Gradient flow along training")]
    snap_runs = [r for r in runs if has_snapshots(r)]
    if not snap_runs:
        blocks.append(Para("Not measured: the runs kept no weight snapshots (train.snapshots)."))
        return blocks, claims
    found, _ = _measured(
        lambda: measure_gradients(snap_runs, batch_size=batch_size, device=device, data_cache=cache),
        plot_gradients, write_gradients_csv, gradient_verdicts, out / "gradients",
        lambda grads: f"Norm of the loss gradient at each conv's weights, by depth, on one fixed batch of {batch_size} "
                      f"training images (train-mode BN), at each saved snapshot; log scale. Numbers: gradients.csv.")
    return blocks + found, claims


def _measured(measure, plot, write_csv, verdicts, stem: Path, caption, empty: str | None = None
              ) -> tuple[list, list[Verdict]]:
    """A measured analysis as report blocks: its figure (stem.png), numbers (stem.csv) and verdicts — or one
    line saying why it could not be measured (a report never fails on its analysis); and the verdicts."""
    try:
        profiles = measure()
        fig = plot(profiles, stem.with_suffix(".png"))
        write_csv(profiles, stem.with_suffix(".csv"))
        found = verdicts(profiles)
        texts = [v.text for v in found]
        return [Figure(fig, caption(profiles)), Bullets(texts or ([empty] if empty else []))], found
    except ReslabError as e:
        return [Para(f"Not measured: {e}")], []


def verdict_blocks(verdicts: list[Verdict], analysis: list[Verdict] = ()) -> list:
    """A report's first section: one line per claim with its mark (reproduced, not separable, ...) — the study's
    verdicts, then the analysis' (Fig. 7) ones — and the study's verdicts in words (the analysis' stay in their
    own section)."""
    blocks = [Heading("Verdicts"), Marks([(v.mark, v.claim) for v in [*verdicts, *analysis]]),
              Heading("In detail", 3), Bullets([v.text for v in verdicts])]
    if analysis:
        blocks.append(Para("The Fig. 7 lines are measured and worded under Layer responses, below."))
    return blocks
