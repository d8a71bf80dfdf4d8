"""A study sized by the wall time it is given (`reslab study ... --budget 15m`, or `study.budget` in a profile).

Before anything is written, each distinct net of the grid is timed for a few steps on the study's device
(reslab.engine.estimate: the trainer's own step, in the run's precision), and the iteration count is chosen so
that the whole study — training, its evaluation points, start-up and the report — fits the budget. The profile's
number of evaluation points is kept, the learning-rate milestones and snapshots stay fractions of training, so
the schedule scales with the iteration count. The plan is stored in study.json and a rerun keeps it: a started
study is never re-planned (the budget is not part of what makes two studies the same).
"""
from __future__ import annotations

import platform
from datetime import datetime
from pathlib import Path

from reslab import ReslabError
from reslab.config import Config, budget_seconds, from_dict, resolve_schedule
from reslab.data import n_eval_images, n_train_images
from reslab.engine.device import choose_amp, resolve_device
from reslab.engine.estimate import duration, evaluations, measure_speed
from reslab.engine.runs import STUDY_FILE
from reslab.study.spec import StudySpec, check_study, read_spec

SAFETY = 0.9         # plan 90% of the budget: the rest absorbs what a probe of seconds cannot see
START_SECONDS = 20   # loading the data set once, and the study's own bookkeeping
RUN_SECONDS = 6      # per run: building it, its probe, checkpoints and snapshots
REPORT_RUNS_IMAGES = 2000  # the report measures each finished run on ~this many images (responses, gradients)
REPORT_SECONDS = 30  # the report's figures and pages, beyond those measurements
MIN_ITERATIONS = 100


def plan_study(spec: StudySpec, out: Path, device: str | None, log=print) -> StudySpec:
    """The spec to run: a new study with study.budget gets a plan measured here; an existing study keeps the
    plan it was started with (or none), whatever the budget given now. Reads and measures only."""
    budget = from_dict(spec.base_config).study.budget
    if (Path(out) / STUDY_FILE).exists():
        check_study(spec, out)  # a different study is refused here, with what differs
        spec.plan = read_spec(out).plan
        if spec.plan:
            log(f"[study] keeping the plan made when the study started: {plan_line(spec.plan)}")
        elif budget:
            log(f"[study] --budget {budget} not applied: the study started without one, and a started study is "
                f"never re-planned (pass --out NEW_DIR for a budgeted study)")
        return spec
    if budget:
        spec.plan = plan_budget(spec, budget_seconds(budget), device, log)
        spec.plan["budget"] = budget
        log(f"[study] plan for --budget {budget}: {plan_line(spec.plan)}")
    return spec


def plan_budget(spec: StudySpec, budget_s: float, device: str | None, log=print) -> dict:
    """Measure every distinct net, then choose the iteration count that fits `budget_s` (see the module doc)."""
    base = from_dict(spec.base_config)
    check_plannable(base)
    points, profile_iterations = evaluation_points(base)
    run_cfgs = [spec.run_config(r) for r in spec.runs]
    cfgs = {cfg.model.name: cfg for cfg in run_cfgs}
    dev = resolve_device(device or base.train.device)
    amp, _ = choose_amp(base.train.amp, dev)
    log(f"[study] measuring {len(cfgs)} net(s) on {dev} for the budget ...")
    speeds = {}
    for name, cfg in cfgs.items():
        cfg.train.amp = amp
        speeds[name] = measure_speed(cfg, dev)
    per_run = [speeds[cfg.model.name] for cfg in run_cfgs]
    t = base.train
    eval_images = sum(n_eval_images(base.data))
    fixed = (START_SECONDS + REPORT_SECONDS + len(spec.runs) * RUN_SECONDS
             + sum(s.run_seconds(0, t.batch_size, points, eval_images) for s in per_run)
             + sum(REPORT_RUNS_IMAGES / s.eval_images_per_s for s in per_run))
    per_iteration = sum(s.run_seconds(1, t.batch_size, 0, 0) for s in per_run)
    smallest = max(MIN_ITERATIONS, 2 * base.optim.warmup_iterations, 4 * points)
    iterations = int((SAFETY * budget_s - fixed) / per_iteration) // points * points
    if iterations < smallest:
        need = (fixed + smallest * per_iteration) / SAFETY
        raise ReslabError(f"--budget {duration(budget_s)} is too short for this study on this machine: "
                          f"{smallest} iterations per run need about {duration(need)}; give at least --budget "
                          f"{int(need // 60) + 1}m, or fewer --depths/--seeds")
    estimate = fixed + iterations * per_iteration
    return {"budget_s": budget_s, "iterations": iterations, "eval_every": iterations // points,
            "profile_iterations": profile_iterations, "estimate_s": round(estimate, 1),
            "training_s": round(iterations * per_iteration, 1), "device": str(dev), "amp": amp,
            "machine": platform.processor() or platform.machine(),
            "made": datetime.now().isoformat(timespec="seconds"),
            "speeds": {name: s.as_dict() for name, s in speeds.items()},
            "overrides": {"train.iterations": iterations, "train.epochs": None,
                          "train.eval_every": iterations // points}}


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
    return (f"{plan['iterations']:,} iterations per run (the profile alone: {plan['profile_iterations']:,}), an "
            f"evaluation every {plan['eval_every']:,}; about {duration(plan['estimate_s'])} of "
            f"{duration(plan['budget_s'])} here ({plan['device']}, {'fp32' if plan['amp'] == 'none' else plan['amp']};"
            f" training img/s: {speeds})")
