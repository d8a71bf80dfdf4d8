"""Assemble the degradation study report from a study directory."""
from __future__ import annotations

from pathlib import Path

from reslab.config import from_dict, resolve_schedule
from reslab.engine.checkpoint import atomic_write_text
from reslab.report import figures
from reslab.report.collect import ModelResult, Study, load_study, mean_std
from reslab.report.document import Bullets, Document, Figure, Heading, Para, Table, to_html, to_markdown
from reslab.report.sections import confusion_section, per_class_section
from reslab.report.verdicts import all_verdicts

# He et al. 2016, Table 6: CIFAR-10 test error (%) of the residual nets (ResNet-110: best of 5 runs; mean 6.61±0.16).
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def fmt(mean, std=None, n=1, digits=2, suffix=""):
    if mean is None:
        return "–"
    s = f"{mean:.{digits}f}{suffix}"
    if std is not None and n > 1:
        s += f" ± {std:.{digits}f}"
    return s


def _protocol(study: Study) -> list[str]:
    cfg = from_dict(study.spec.base_config)
    d, o, t = cfg.data, cfg.optim, cfg.train
    n_train = d.train_subset or (50000 - d.val_size)
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


def _results_table(models: list[ModelResult]) -> Table:
    rows = []
    for m in sorted(models, key=lambda m: (m.group != "plain", m.depth or 0)):
        n = len(m.finished)
        if n == 0:
            rows.append([m.model, str(m.depth), "–", *(["–"] * 7), f"{m.runs[0].status}"])
            continue
        bv = mean_std([r.summary["best"]["val_error"] for r in m.finished if r.summary.get("best")])
        bt = mean_std([r.summary["best"]["test_error"] for r in m.finished if r.summary.get("best")])
        rows.append([
            m.model, str(m.depth), f"{m.finished[0].summary['parameters']:,}",
            fmt(*m.stat("train_loss"), digits=4), fmt(*m.stat("train_error")), f"**{fmt(*m.stat('test_error'))}**",
            f"{fmt(*bv)} ({fmt(*bt)})", fmt(*m.summary_stat("wall_seconds"), digits=0),
            fmt(*m.summary_stat("train_images_per_s"), digits=0), f"{n} finished"
            + (f", {len(m.runs) - n} not" if len(m.runs) > n else "")])
    return Table(["model", "depth", "params", "final train loss", "final train err %", "final test err %",
                  "best val err % (test there)", "wall s", "img/s", "runs"], rows)


def build_report(study_dir: Path) -> tuple[Document, dict]:
    study = load_study(study_dir)
    out = Path(study_dir) / "report"
    models = study.models()
    finished = [m for m in models if m.finished]
    seeds = max((len(m.runs) for m in models), default=1)
    doc = Document(f"Degradation study: plain vs residual networks on CIFAR-10 ({study.spec.profile} profile)")

    verdicts = all_verdicts(models)
    doc.add(Heading("Verdicts"), Bullets([v.text for v in verdicts]),
            Para("Verdicts are computed from the final numbers below"
                 + (f" (means over {seeds} seeds)" if seeds > 1 else " (one seed per model: no error bars; "
                    "rerun with --seeds 3 to measure seed-to-seed noise)") + "."))
    doc.add(Heading("Protocol"), Bullets(_protocol(study)))

    figs = {}
    if any(r.rows for r in study.runs):
        figs["figure6"] = figures.figure6(study, out)
        figs["pairs"] = figures.pair_curves(study, out)
        figs["lr"] = figures.lr_schedule(study, out)
        doc.add(Heading("Training curves (the paper's Figure 6)"),
                Figure(figs["figure6"], "Training error (dashed; mean over each window of train.log_every "
                       "iterations, on augmented images) and test error (bold) vs iterations; left plain nets, right "
                       "ResNets, same axes, one colour per depth."),
                Figure(figs["pairs"], "Per pair: training loss and test error, plainN (red, dashed) vs resnetN (blue)."),
                Figure(figs["lr"], "Learning rate at every iteration (one schedule for every model)."))

    doc.add(Heading("Results"), _results_table(models),
            Para("Final = at the end of training. Training error is measured during training (augmented images, "
                 "train-mode BN), as in the paper's curves. Best = the evaluation point with the lowest "
                 "**validation** error; the test error at that point is shown beside it — the test set never "
                 "selects anything."))

    ranked = sorted(finished, key=lambda m: m.stat("test_error")[0])
    doc.add(Heading("Ranking (best to worst final test error)"),
            Table(["rank", "model", "final test err %"],
                  [[str(i), m.model, fmt(*m.stat("test_error"))] for i, m in enumerate(ranked, 1)]))

    cfg = from_dict(study.spec.base_config)
    paper_protocol = study.spec.profile == "paper"
    rows = []
    for m in sorted((m for m in finished if m.group == "resnet"), key=lambda m: m.depth):
        ref = PAPER_TABLE6.get(m.depth)
        rows.append([m.model, fmt(*m.stat("test_error")), f"{ref:.2f}" if ref else "–"])
    if rows:
        note = ("Same protocol as the paper (single runs of ours vs the paper's)." if paper_protocol else
                "**Paper protocol only**: the paper's numbers come from 64k iterations on 45k images and the full "
                f"test set; this study ran the {study.spec.profile} profile ({cfg.data.test_subset or 10000} test "
                "images, far fewer iterations), so the columns are not comparable — they are shown for context.")
        doc.add(Heading("Against the paper (Table 6, ResNets)"),
                Table(["model", "ours: test err %", "paper: test err %"], rows), Para(note))

    doc.add(*per_class_section(sorted(finished, key=lambda m: (m.group != "plain", m.depth))))
    doc.add(*confusion_section(ranked[0] if ranked else None, out, figs))
    # ---- analysis (issue 7): Fig. 7 layer responses and gradient flow; empty when no run finished ----
    from reslab.analysis.report import analysis_blocks
    doc.add(*analysis_blocks(study, out, max_images=1000))
    # ---- end analysis ----
    doc.add(Heading("Files"), Para("Every run's directory under runs/ holds its config, metrics.csv, summary.json, "
                                   "checkpoints and (if tensorboard is installed) TensorBoard events: "
                                   f"`tensorboard --logdir {study.path}`."))
    return doc, {"figures": figs, "verdicts": verdicts}


def write_report(study_dir: Path) -> dict:
    study_dir = Path(study_dir)
    out = study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    from reslab.report import imagenet_style  # the report follows the study's kind
    builder = imagenet_style.build_report if imagenet_style.is_imagenet_style(study_dir) else build_report
    doc, extra = builder(study_dir)
    md, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md, to_markdown(doc, out))
    atomic_write_text(html_path, to_html(doc))
    return {"md": md, "html": html_path, **extra}
