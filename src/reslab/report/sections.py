"""Report sections that every study kind shows the same way: the protocol, per-class accuracy and the best
model's confusion matrix (from the test evaluations each finished run wrote, summed or averaged over seeds), and
the analysis of why residual learning works (Fig. 7 responses and gradient flow, measured on the runs)."""
from __future__ import annotations

from pathlib import Path

from reslab import ReslabError
from reslab.analysis.common import DataCache
from reslab.analysis.findings import gradient_verdicts, response_verdicts
from reslab.analysis.gradients import has_snapshots, measure_gradients, plot_gradients, write_gradients_csv
from reslab.analysis.responses import measure_responses, plot_responses, write_responses_csv
from reslab.config import from_dict, resolve_schedule
from reslab.data import CLASSES, n_train_images
from reslab.report import figures
from reslab.report.document import Bullets, Figure, Heading, Para, Table
from reslab.study.results import ModelResult, Study


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


def fmt(mean, std=None, n=1, digits=2, suffix=""):
    if mean is None:
        return "–"
    s = f"{mean:.{digits}f}{suffix}"
    if std is not None and n > 1:
        s += f" ± {std:.{digits}f}"
    return s


def protocol_items(study: Study) -> list[str]:
    """The protocol section's bullets, common to every study kind."""
    cfg = from_dict(study.spec.base_config)
    d, o, t = cfg.data, cfg.optim, cfg.train
    n_train = n_train_images(d)
    sched = resolve_schedule(cfg, n_train)
    seeds = sorted({r.seed for r in study.runs})
    items = [
        f"profile **{study.spec.profile}**; every run uses this one config, only `model.name` (and the seed) differ",
        f"{sched.iterations:,} iterations at batch {t.batch_size} ({sched.iterations / sched.steps_per_epoch:.2f} "
        f"epochs of {n_train:,} training images{' — a class-balanced subset' if d.train_subset else ''})",
        f"SGD lr {o.lr}, momentum {o.momentum}, weight decay {o.weight_decay}; lr x{o.gamma} at iterations "
        f"{', '.join(f'{m:,}' for m in sched.milestones)}"
        + (f"; {o.warmup} warm-up ({o.warmup_iterations} iterations)" if o.warmup != 'none' else ""),
        f"shortcut option {cfg.model.shortcut}; normalisation {d.normalization}; augmentation "
        f"{'pad ' + str(d.pad) + ' + random crop + flip' if d.augment else 'off'}",
        f"validation: {d.val_subset or d.val_size:,} images held out of the training set"
        f"{' (best is selected here, never on test)' if d.val_size else ''}; test: "
        f"{d.test_subset or 10000:,} {'class-balanced images of the 10k test set' if d.test_subset else 'test images'}",
        f"seeds: {', '.join(map(str, seeds))}",
    ]
    envs = [r.env for r in study.runs if r.env]
    if envs:
        e = envs[0]
        items.append(f"ran on {e.get('device')} ({e.get('device_name', e.get('machine'))}, {e.get('threads')} threads), "
                     f"torch {e.get('torch')}, reslab {e.get('reslab')}"
                     + (f", git {e['git_commit'][:10]}" if e.get("git_commit") else ""))
    wall = sum(r.summary.get("wall_seconds") or 0 for r in study.runs)
    items.append(f"total training wall time {wall / 60:.1f} min (sum over runs)")
    return items


def analysis_section(study: Study, out: Path, *, max_images: int = 1000, batch_size: int = 64,
                    device: str = "cpu") -> list:
    """Report blocks: Fig. 7 responses of every finished run's final weights on `max_images` test images, and
    gradient norms at each snapshot on one batch of `batch_size` training images. Kept cheap because every
    report rebuild pays it: one eval pass over `max_images` per run and one forward/backward of `batch_size`
    images per snapshot (half of `reslab analyze gradients`' less noisy default of 128). A study whose runs kept no snapshots gets the responses
    only; one whose runs cannot be measured gets a line saying why, never a failed report."""
    runs = [Path(study.path) / "runs" / r.name for r in study.runs if r.status == "finished"]
    if not runs:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = DataCache()
    blocks: list = [Heading("Layer responses (the paper's Figure 7)")]
    blocks += _measured(lambda: measure_responses(runs, max_images=max_images, device=device, data_cache=cache),
                        plot_responses, write_responses_csv, response_verdicts, out / "responses",
                        lambda resp: f"Std of each 3x3 layer's response (after BN, before ReLU/addition) of the final "
                                     f"weights on {resp[0].images} {resp[0].split} images; top: layer order, bottom: "
                                     f"sorted. Numbers: responses.csv.",
                        empty="no plainN/resnetN pair to compare")
    blocks.append(Heading("Gradient flow along training"))
    snap_runs = [r for r in runs if has_snapshots(r)]
    if not snap_runs:
        blocks.append(Para("Not measured: the runs kept no weight snapshots (train.snapshots)."))
        return blocks
    blocks += _measured(lambda: measure_gradients(snap_runs, batch_size=batch_size, device=device, data_cache=cache),
                        plot_gradients, write_gradients_csv, gradient_verdicts, out / "gradients",
                        lambda grads: f"Norm of the loss gradient at each conv's weights, by depth, on one fixed batch "
                                      f"of {batch_size} training images (train-mode BN), at each saved snapshot; log "
                                      f"scale. Numbers: gradients.csv.")
    return blocks


def _measured(measure, plot, write_csv, verdicts, stem: Path, caption, empty: str | None = None) -> list:
    """A measured analysis as report blocks: its figure (stem.png), numbers (stem.csv) and verdicts — or one
    line saying why it could not be measured (a report never fails on its analysis)."""
    try:
        profiles = measure()
        fig = plot(profiles, stem.with_suffix(".png"))
        write_csv(profiles, stem.with_suffix(".csv"))
        texts = [v.text for v in verdicts(profiles)]
        return [Figure(fig, caption(profiles)), Bullets(texts or ([empty] if empty else []))]
    except ReslabError as e:
        return [Para(f"Not measured: {e}")]
