"""A study sized by the wall time it is given (`reslab study ... --budget 15m`, or `study.budget` in a profile).

Before anything is written, each distinct net of the grid is timed for a few steps on the study's device
(reslab.engine.estimate: the trainer's own step, in the run's precision), and the iteration count is chosen so
that the whole study — training, its evaluation points, start-up and the report — fits the budget. The profile's
number of evaluation points is kept, the learning-rate milestones and snapshots stay fractions of training, so
the schedule scales with the iteration count. `reslab study degradation --budget T` without --profile also
chooses the study's shape (SHAPES below): the hour profile's where T holds enough of it, the quick profile's
below; the plan says which and why. The plan is stored in study.json and a rerun keeps it: a started study is
never re-planned (the budget is not part of what makes two studies the same).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from reslab import ReslabError, layout
from reslab.config import Config, budget_seconds, flatten, from_dict, load_config, resolve_schedule, to_dict
from reslab.data import n_eval_images, n_probe_images, n_train_images
from reslab.engine.device import choose_amp, resolve_device
from reslab.engine.estimate import duration, evaluations, measure_speed

from reslab.study.spec import StudySpec, check_study, read_spec

SAFETY = 0.9         # plan 90% of the budget: the rest absorbs what a probe of seconds cannot see
START_SECONDS = 20   # loading the data set once, and the study's own bookkeeping
RUN_SECONDS = 6      # per run: building it, its probe, checkpoints and snapshots
REPORT_RUNS_IMAGES = 2000  # the report measures each finished run on ~this many images (responses, gradients)
REPORT_SECONDS = 30  # the report's figures and pages, beyond those measurements
MIN_ITERATIONS = 100


# The shape a budget buys (`reslab study degradation --budget T` without --profile): the hour profile's — the full
# split at batch 128 — once the budget gives every run at least HOUR_MIN_EPOCHS epochs of it at the speeds
# measured here, else the quick profile's (an 8k subset at batch 32: more updates per second of CPU). Four epochs
# is where issue 20's probe of the full split (resnet20, step schedule) came out at 28.4% test error, well below
# what the quick shape reaches in 15 minutes; the validation trials of docs/hour-study.md check the threshold.
SHAPES = ("quick", "hour")  # (below the threshold, above it): built-in profiles; the study starts from the first
HOUR_MIN_EPOCHS = 4


@dataclass
class Fit:
    """What a budget holds for one config of the study: the iterations that fit and the sums behind them."""

    iterations: int
    smallest: int          # the fewest iterations a plan may have
    points: int            # evaluation points (the profile's number, kept)
    profile_iterations: int
    steps_per_epoch: int
    fixed_s: float         # start-up, evaluations, per-run costs and the report
    per_iteration_s: float  # one iteration of every run
    amp: str
    device: str
    speeds: dict


def plan_study(spec: StudySpec, out: Path, device: str | None, log=print, choose_shape: bool = False) -> StudySpec:
    """The spec to run: a new study with study.budget gets a plan measured here (with `choose_shape`, in the shape
    the budget buys, see SHAPES); an existing study keeps the plan it was started with (or none), whatever the
    budget given now. Reads and measures only."""
    budget = from_dict(spec.base_config).study.budget
    if (Path(out) / layout.STUDY_FILE).exists():
        check_study(spec, out)  # a different study is refused here, with what differs
        spec.plan = read_spec(out).plan
        if spec.plan:
            log(f"[study] keeping the plan made when the study started: {plan_line(spec.plan)}")
        elif budget:
            log(f"[study] --budget {budget} not applied: the study started without one, and a started study is "
                f"never re-planned (pass --out NEW_DIR for a budgeted study)")
        return spec
    if budget:
        spec.plan = plan_budget(spec, budget_seconds(budget), device, log, choose_shape, budget)
        spec.plan["budget"] = budget
        log(f"[study] plan for --budget {budget}: {plan_line(spec.plan)}")
    return spec


def plan_budget(spec: StudySpec, budget_s: float, device: str | None, log=print, choose_shape: bool = False,
                budget: str | None = None) -> dict:
    """Measure every distinct net, then choose the iteration count that fits `budget_s` (see the module doc);
    with `choose_shape` the hour shape first, kept if it gives HOUR_MIN_EPOCHS epochs, else the spec's own.
    `budget`: the budget as the user wrote it, for the log."""
    shape, why, extra = None, None, {}
    if choose_shape:
        small, large = SHAPES
        hour = shape_overrides(from_dict(spec.base_config), small, large)
        fit = measure_fit(StudySpec(spec.kind, spec.profile, spec.base_config, spec.runs, {"overrides": hour}),
                          budget_s, device, log)
        epochs = fit.iterations / fit.steps_per_epoch
        enough = epochs >= HOUR_MIN_EPOCHS
        shape = large if enough else small
        why = (f"the hour shape (the full split at batch 128) gives {epochs:.1f} epochs per run here, "
               f"{'at least' if enough else 'fewer than'} the {HOUR_MIN_EPOCHS} it needs")
        log(f"[study] shape for --budget {budget or duration(budget_s)}: {shape} ({why})")
        if enough:
            extra = hour
        else:
            fit = measure_fit(spec, budget_s, device, log)
    else:
        fit = measure_fit(spec, budget_s, device, log)
    if fit.iterations < fit.smallest:
        need = (fit.fixed_s + fit.smallest * fit.per_iteration_s) / SAFETY
        raise ReslabError(f"--budget {duration(budget_s)} is too short for this study on this machine: "
                          f"{fit.smallest} iterations per run need about {duration(need)}; give at least --budget "
                          f"{int(need // 60) + 1}m, or fewer --depths/--seeds")
    its, every = fit.iterations, fit.iterations // fit.points
    plan = {"budget_s": budget_s, "iterations": its, "eval_every": every, "profile_iterations": fit.profile_iterations,
            "estimate_s": round(fit.fixed_s + its * fit.per_iteration_s, 1),
            "training_s": round(its * fit.per_iteration_s, 1), "device": fit.device, "amp": fit.amp,
            "machine": platform.processor() or platform.machine(),
            "made": datetime.now().isoformat(timespec="seconds"), "speeds": fit.speeds,
            "overrides": {**extra, "train.iterations": its, "train.epochs": None, "train.eval_every": every}}
    return {**plan, "shape": shape, "shape_why": why} if shape else plan


def measure_fit(spec: StudySpec, budget_s: float, device: str | None, log=print) -> Fit:
    """Measure every distinct net of `spec` (in its config, plan overrides included) and size its iterations."""
    base = spec.config()
    check_plannable(base)
    points, profile_iterations = evaluation_points(base)
    run_cfgs = [spec.run_config(r) for r in spec.runs]
    cfgs = {cfg.model.name: cfg for cfg in run_cfgs}
    dev = resolve_device(device or base.train.device)
    amp, _ = choose_amp(base.train.amp, dev)
    log(f"[study] measuring {len(cfgs)} net(s) on {dev} at batch {base.train.batch_size} for the budget ...")
    speeds = {}
    for name, cfg in cfgs.items():
        cfg.train.amp = amp
        speeds[name] = measure_speed(cfg, dev)
    per_run = [speeds[cfg.model.name] for cfg in run_cfgs]
    t = base.train
    eval_images = sum(n_eval_images(base.data))
    if base.data.test_subset == 0:  # a validation-only trial is sized as the study it stands for, test included,
        eval_images += n_eval_images(replace(base.data, test_subset=None))[1]  # so its iterations can be frozen
    # fixed: start-up, the report, each run's evaluation points, the report's measurements of each run and the
    # train probe its final evaluation adds
    fixed = (START_SECONDS + REPORT_SECONDS + len(spec.runs) * RUN_SECONDS
             + sum(s.run_seconds(0, t.batch_size, points, eval_images) for s in per_run)
             + sum((REPORT_RUNS_IMAGES + n_probe_images(base.data)) / s.eval_images_per_s for s in per_run))
    per_iteration = sum(s.run_seconds(1, t.batch_size, 0, 0) for s in per_run)
    smallest = max(MIN_ITERATIONS, 2 * base.optim.warmup_iterations, 4 * points)
    iterations = max(0, int((SAFETY * budget_s - fixed) / per_iteration) // points * points)
    spe = resolve_schedule(base, n_train_images(base.data)).steps_per_epoch
    return Fit(iterations, smallest, points, profile_iterations, spe, fixed, per_iteration, amp, str(dev),
               {name: s.as_dict() for name, s in speeds.items()})


def shape_overrides(base: Config, frm: str, to: str) -> dict:
    """The flat keys that turn profile `frm`'s shape into profile `to`'s: every key where the two profiles differ,
    except those `base` (frm's config with the user's --set) has already moved off frm's value."""
    a, b, mine = (flatten(to_dict(c)) for c in (load_config(frm), load_config(to), base))
    return {k: b[k] for k in b if b[k] != a[k] and mine[k] == a[k]}


def check_plannable(base: Config) -> None:
    """A schedule the plan can scale: milestones as fractions of training, one local device."""
    if base.optim.milestones_unit != "fraction":
        raise ReslabError(f"--budget scales the schedule, so it needs optim.milestones_unit=fraction (the quick "
                          f"profiles use it); this profile has {base.optim.milestones_unit!r}")
    if base.launcher.name != "local":
        raise ReslabError("--budget sizes a study for this machine; with --launcher submitit set "
                          "train.iterations instead")


def evaluation_points(base: Config) -> tuple[int, int]:
    """(evaluation points, iterations) of the profile's own schedule: the plan keeps the number of points."""
    sched = resolve_schedule(base, n_train_images(base.data))
    return evaluations(sched.iterations, base.train.eval_every or sched.steps_per_epoch), sched.iterations


def plan_line(plan: dict) -> str:
    speeds = ", ".join(f"{name} {s['train_images_per_s']:.0f}" for name, s in plan["speeds"].items())
    shape = f"the {plan['shape']} shape, " if plan.get("shape") else ""
    return (f"{shape}{plan['iterations']:,} iterations per run (the profile alone: {plan['profile_iterations']:,}), an "
            f"evaluation every {plan['eval_every']:,}; about {duration(plan['estimate_s'])} of "
            f"{duration(plan['budget_s'])} here ({plan['device']}, {'fp32' if plan['amp'] == 'none' else plan['amp']};"
            f" training img/s: {speeds})")
