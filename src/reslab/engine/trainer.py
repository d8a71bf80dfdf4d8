"""The training loop: the paper's protocol, iteration-based, exactly resumable.

Read it top to bottom. `train()` sets up (`find_resume_point`, `build_setup`, the one writer of the run), starts
or resumes the run (`start_or_resume`), then `train_loop` steps through iterations: a step, then what that
iteration calls for (reslab.engine.cadence: snapshot / log / evaluate-and-checkpoint / stop). Everything the
loop works with is one plain `Run`: its fixed `Setup`, its writer, its trackers and the loop's `TrainState`; the
helpers below the loop each do one of its steps and take the `Run` explicitly.

Every random choice is derived from (seed, epoch) for the shuffle and (seed, iteration) for the augmentation, so
a run resumed at any step boundary sees exactly the images, crops and flips an uninterrupted run would — and,
with deterministic kernels, reaches bit-identical weights and metrics.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import cast

import torch

from reslab import ReslabError, layout
from reslab.config import Config, Schedule, from_dict, load_yaml, resolve_schedule, to_dict, validate
from reslab.data import CifarData, Normalizer, mix_seed
from reslab.engine import distributed, runs
from reslab.weights.files import newest_good_checkpoint, require_run_dir
from reslab.engine.cadence import Cadence, decide
from reslab.engine.correct import Correctness, correct_document
from reslab.engine.device import (choose_amp, fused_batchnorm, kernel_settings, native_bf16, set_determinism,
                                  set_tf32, torch_sync)
from reslab.engine.estimate import duration, evaluations, measure_speed
from reslab.engine.evaluate import EvalResult, evaluate
from reslab.engine.graph import GraphStep, use_graph
from reslab.engine.init import apply_init, load_init
from reslab.engine.prepare import Prepared, prepare_data
from reslab.engine.progress import EpochBar, PlainProgress, announce, epoch_progress, rate, status
from reslab.engine.schedule import LRSchedule
from reslab.engine.signals import StopRequest, signal_name
from reslab.engine.state import Progress, TrainState, model_payload, restore, resumable_payload
from reslab.engine.step import train_step, training_batch
from reslab.engine.summary import RunSummary, read_summary
from reslab.engine.writer import RunWriter
from reslab.models import count_params, model_from_config, model_info
from reslab.trackers import TrackedRun, Trackers, open_trackers
from reslab.weights import Pretrained


CPU_HINT_SECONDS = 30 * 60  # a CPU run planned longer than this gets the hint toward the short profile


class NonFiniteLoss(ReslabError):
    pass


@dataclass
class ResumePoint:
    """Where a resumed run continues: its newest good checkpoint."""

    run_dir: Path
    ckpt_path: Path
    ckpt: dict


@dataclass(frozen=True)
class Setup:
    """What a run is, built once by `build_setup` and never reassigned: config, device, data, model, optimiser,
    schedule (the objects themselves train, of course)."""

    cfg: Config
    ctx: distributed.DistContext
    dev: torch.device
    prep: Prepared
    sched: Schedule
    model: torch.nn.Module        # the bare network: checkpoints hold its state dict (no `module.` prefix)
    step_model: torch.nn.Module   # what the steps run through: DDP and/or torch.compile around `model`
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    lrs: LRSchedule
    shard: tuple[int, int] | None  # this process's rows of every global batch (torchrun), else None
    n_params: int
    init_note: str | None = None  # where the initial weights came from (model.init_from), for the log
    amp_note: str | None = None   # what train.amp=auto chose and why (printed, and kept in env.json)
    graph: GraphStep | None = None  # train.cuda_graph: the step captured as a CUDA graph (None: eager steps)
    fused_bn: str = ""              # whether BatchNorm+ReLU take the fused CPU kernel, and if not why


@dataclass
class Run:
    """A run under way, everything the loop works with (plain data, no behaviour): its setup, the one writer of
    its directory, its trackers, and the loop's state (what a checkpoint saves)."""

    setup: Setup
    writer: RunWriter
    state: TrainState
    trackers: Trackers            # none until start_or_resume opens train.loggers


def train(cfg: Config | None = None, *, runs_dir: str | Path = "runs", resume: str | Path | None = None,
          data: CifarData | None = None, device: str | None = None, quiet: bool = False,
          stop_after: int | None = None, run_name: str | None = None) -> Path:
    """Train one model; returns its run directory (`run_config(run_dir)`: the config as the run resolved it; the
    caller's `cfg` is left as it was given).

    cfg         a validated Config (ignored with `resume`, which uses the run's own config)
    resume      a run directory to continue from its newest good checkpoint
    data        the data set already in memory (studies load it once for many runs)
    device      overrides train.device (e.g. to resume a run on another device)
    stop_after  stop (with a checkpoint, as on Ctrl-C) after this many iterations in this call — for tests
    run_name    create exactly runs_dir/run_name (must not exist) instead of <model>-<timestamp>; studies use it

    Started by torchrun (WORLD_SIZE > 1), every process calls this: one model is trained with
    DistributedDataParallel, each process on its slice of every global batch, and only rank 0 writes
    (see reslab.engine.distributed and reslab.engine.writer).
    """
    ctx = distributed.setup()
    writer: RunWriter | None = None
    run: Run | None = None
    try:
        quiet = quiet or not ctx.main
        found: ResumePoint | None = None
        if resume is not None:  # the run's lock first: a second writer is refused before it reads or writes
            writer = RunWriter(ctx, ctx.on_main(partial(require_run_dir, Path(resume))), quiet)
            found = ctx.on_main(partial(find_resume_point, writer.run_dir, quiet))
            if found is None:  # the run has finished: nothing to resume
                return writer.run_dir
        # the run's own copy: what it resolves (device, amp, pad fill) is recorded in its config.yaml, and the
        # caller's config is left as it was given
        if found is not None:
            cfg = validate(from_dict(found.ckpt["config"]))
        elif cfg is None:
            raise ReslabError("train() needs a config or a run to resume")
        else:
            cfg = copy.deepcopy(cfg)
        if device is not None:
            cfg.train.device = device
            if found is not None and cfg.train.cuda_graph == "on":  # resumed elsewhere: graphed where it can be
                cfg.train.cuda_graph = "auto"
        init = ctx.on_main(partial(load_init, cfg.model.init_from)) if found is None and cfg.model.init_from else None
        if init is not None and cfg.data.pad_fill == "init":  # config.yaml records what was used
            cfg.data.pad_fill = init.pad_fill or "mean"
        setup = build_setup(ctx, cfg, data, init, normalizer_to_keep(cfg, found, init))
        if writer is None:  # a new run: its directory is created only now that everything it needs is known good
            writer = new_run_writer(setup, Path(runs_dir), run_name, quiet, init)
        run = Run(setup, writer, TrainState.fresh(setup.dev), Trackers([], writer.log))
        start_or_resume(run, found)
        return train_loop(run, stop_after)
    finally:
        if run is not None:
            run.trackers.close("failed")  # only still open when training raised
        if writer is not None:
            writer.close()
        ctx.close()


def run_config(run_dir: str | Path) -> Config:
    """The config a run trains with, as it resolved it (device, `train.amp: auto`'s choice, the pad fill of
    `init`): its config.yaml. `train()` returns the run directory; this is what it resolved."""
    return validate(from_dict(load_yaml(require_run_dir(Path(run_dir)) / layout.CONFIG_FILE)))


def find_resume_point(run_dir: Path, quiet: bool) -> ResumePoint | None:
    """The newest good checkpoint of a run, None if it has finished (rank 0 reads the run; every rank resumes
    from what it found)."""
    run_dir = require_run_dir(run_dir)
    if read_summary(run_dir).status == "finished":
        if not quiet:
            print(f"{run_dir} already finished; nothing to resume")
        return None
    found = newest_good_checkpoint(layout.checkpoints_dir(run_dir), runs.RunLog(run_dir, quiet))
    if found is None:
        raise ReslabError(f"{run_dir} has no usable checkpoint to resume from; start a new run")
    ckpt_path, ckpt = found
    validate(from_dict(ckpt["config"]))
    own = load_yaml(run_dir / layout.CONFIG_FILE).get("model", {}).get("name")
    if own != ckpt["model"]["name"]:
        raise ReslabError(f"{ckpt_path} is a checkpoint of {ckpt['model']['name']}, but the run trains {own}")
    return ResumePoint(run_dir, ckpt_path, ckpt)


def normalizer_to_keep(cfg: Config, found: ResumePoint | None, init: Pretrained | None) -> Normalizer | None:
    """data.normalization=init: the initial weights' normalisation (stored in every checkpoint for a resume)."""
    if cfg.data.normalization != "init":
        return None
    if found is not None:
        return Normalizer.from_state_dict(found.ckpt["normalization"])
    if init is None:  # config validation refuses this; said here too, in the run's terms
        raise ReslabError("data.normalization=init needs model.init_from (the weights whose normalisation to use)")
    return init.normalizer


def build_setup(ctx: distributed.DistContext, cfg: Config, data: CifarData | None, init: Pretrained | None = None,
                normalizer: Normalizer | None = None) -> Setup:
    """Device, data, model (fresh, or from `init`), optimiser, schedule: everything but the run directory."""
    t = cfg.train
    dev = ctx.device(t.device)
    t.amp, amp_note = choose_amp(t.amp, dev)  # the run records the choice: a resume keeps it on any machine
    graphed = use_graph(t.cuda_graph, dev, t.amp, t.compile, ctx.enabled)  # train.cuda_graph=on here, or one line
    shard = ctx.shard(t.batch_size) if ctx.enabled else None
    set_determinism(t.deterministic, dev)  # first: before any cuBLAS call (the throughput probe comes later)
    set_tf32(t.tf32)
    prep = prepare_data(cfg, dev, data, normalizer)
    sched = resolve_schedule(cfg, prep.n_train)
    torch.manual_seed(t.seed)  # the model's initialisation comes from this seed alone
    model = model_from_config(cfg)
    source = cfg.model.init_from  # what `init` was loaded from (train() loads it only when this is set)
    init_note = apply_init(model, init, cfg.model.name, source) if init is not None and source else None
    model = model.to(dev)
    if t.sync_bn:
        model = ctx.convert_sync_bn(model, dev)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    n_params = count_params(model)
    # Weight decay on every parameter, BN included, as in the paper's Torch code and most reproductions.
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    lrs = LRSchedule(cfg, sched, model_info(cfg.model.name).depth)
    scaler = torch.amp.GradScaler(dev.type, enabled=t.amp == "fp16")
    wrapped = ctx.wrap(model, dev, t.sync_bn)
    # torch.compile of a module is a module (OptimizedModule); its stubs only say "a callable"
    step_model = cast(torch.nn.Module, torch.compile(wrapped)) if t.compile else wrapped
    graph = GraphStep(model, optimizer, dev, t.amp) if graphed else None
    # Only rank 0 says a compile is coming, as it alone says everything else.
    fused_bn = fused_batchnorm(dev, t.channels_last, t.compile,
                               notify=announce if not ctx.enabled or ctx.rank == 0 else None)
    return Setup(cfg, ctx, dev, prep, sched, model, step_model, optimizer, scaler, lrs, shard, n_params,
                 init_note, amp_note, graph, fused_bn)


def new_run_writer(setup: Setup, runs_dir: Path, run_name: str | None, quiet: bool,
                   init: Pretrained | None) -> RunWriter:
    """The writer of a new run: creates its directory (config.yaml, env.json with what was resolved) under its
    lock. The other writer `train` opens is a resumed run's, before anything of it is read."""
    extra_env = {"init_from": init.origin} if init is not None else {}
    extra_env["kernels"] = {**kernel_settings(), "cuda_graph": setup.graph is not None,
                            "fused_batchnorm_relu": setup.fused_bn}
    if setup.amp_note:
        extra_env["amp"] = {"asked": "auto", "chose": setup.cfg.train.amp, "why": setup.amp_note}
    w = RunWriter.create(setup.ctx, runs_dir, setup.cfg, setup.dev, run_name, quiet, extra_env)
    w.log(f"run {w.run_dir}", always=True)  # --quiet still says where the run is
    for note in (setup.init_note, setup.amp_note):
        if note:
            w.log(note)
    return w


def start_or_resume(run: Run, found: ResumePoint | None) -> None:
    """A new run's iteration-0 checkpoint, or the state of `found` restored exactly; then the trackers."""
    s, st = run.setup, run.state
    ctx = s.ctx
    if found is not None:
        restore(found.ckpt, found.ckpt_path, s.model, s.optimizer, s.scaler, s.lrs, st, s.dev,
                rank=ctx.rank if ctx.enabled else None, world_size=ctx.world_size)
        run.writer.write_logs(st)
        run.writer.log(f"resuming {found.run_dir} at iteration {st.iteration} from {found.ckpt_path.name}")
        if run.setup.cfg.train.amp == "bf16" and native_bf16(run.setup.dev) is None:
            run.writer.log(f"note: the run trains in bf16 (as it started); {s.dev.type} here has no native bf16, "
                           f"so its steps are slower on this machine")
    run.writer.log(describe(run))
    if not ctx.enabled and not run.writer.quiet:
        for line in plan_lines(run):
            run.writer.log(line)
    run.trackers = start_trackers(run, found is not None)
    if found is None:
        save_resumable(run)  # iteration 0: a resume is always possible, even after a crash in the first epoch
    run.writer.write_summary(summarize(run, "running"))
    if 0 in run.setup.sched.snapshots and st.iteration == 0:
        run.writer.save(partial(payload, run, "snapshot"), layout.snapshot_name(0))


def plan_lines(run: Run) -> list[str]:
    """What is left of the run and how long it should take here (from a short throughput probe), before the
    first step; on a CPU, a hint toward the short profile when that is hours."""
    t, p, st = run.setup.cfg.train, run.setup.prep, run.state
    total, left = run.setup.sched.iterations, run.setup.sched.iterations - run.state.iteration
    n_eval = evaluations(total, t.eval_every or run.setup.sched.steps_per_epoch, st.iteration)
    eval_images = p.val_x.shape[0] + p.test_x.shape[0]
    speed = measure_speed(run.setup.cfg, run.setup.dev)
    seconds = speed.run_seconds(left, t.batch_size, n_eval, eval_images) + (  # the train probe: once, at the end
        p.probe_x.shape[0] / speed.eval_images_per_s if n_eval else 0.0)
    lines = [f"plan: {left:,} iterations{' left' if left < total else ''} and {n_eval} evaluation"
             f"{'s' if n_eval != 1 else ''} of "
             f"{eval_images:,} images: about {duration(seconds)} here (measured just now: "
             f"{speed.train_images_per_s:,.0f} img/s training, {speed.eval_images_per_s:,.0f} img/s evaluating)"]
    if run.setup.dev.type == "cpu" and seconds > CPU_HINT_SECONDS:
        lines.append("hint: that is long for a CPU; `--config quick` trains a short schedule on an 8k-image subset "
                     "in minutes, and `reslab study degradation --profile quick` shows the degradation problem in "
                     "about 15 minutes")
    return lines


def start_trackers(run: Run, resumed: bool) -> Trackers:
    """The trackers of train.loggers (rank 0 only); a resumed run continues its tracker runs (ids in
    trackers.json, kept for a tracker that cannot start this time). A run of a study is grouped by the study."""
    w, cfg = run.writer, run.setup.cfg
    if not w.main or not cfg.train.loggers:
        return Trackers([], w.log)
    study = runs.study_of(w.run_dir)
    who = TrackedRun(w.run_dir, w.run_dir.name, study.name if study else None, study or w.run_dir.parent,
                     cfg.log.project, cfg.log.mlflow_uri, run.state.iteration if resumed else None)
    ids_file = w.run_dir / layout.TRACKERS_FILE
    stored = runs.read_json(ids_file) if resumed and ids_file.exists() else {}
    trackers = open_trackers(cfg.train.loggers, who, stored, partial(w.log, always=True))
    w.write_tracker_ids({**stored, **trackers.ids()})
    if not resumed:
        trackers.log_config(to_dict(cfg))
    return trackers


def train_loop(run: Run, stop_after: int | None) -> Path:
    """Step, then do what the iteration calls for (reslab.engine.cadence: log, evaluate, checkpoint, stop);
    returns the run directory."""
    cfg, st, w, ctx = run.setup.cfg, run.state, run.writer, run.setup.ctx
    spe, total = run.setup.sched.steps_per_epoch, run.setup.sched.iterations
    cadence = Cadence.of(run.setup.sched, cfg.train.eval_every, cfg.train.log_every)
    done_this_call, perm_epoch, bar = 0, -1, None
    perm = torch.empty(0, dtype=torch.long)  # the epoch's order of the training images, drawn at its first step
    start_wall = time.perf_counter() - st.wall_seconds
    tick = time.perf_counter()
    run.setup.model.train()
    try:
        with StopRequest(echo_grace=2.0 if ctx.enabled else 0.0, announce=ctx.main) as stop:
            if st.pending_eval:  # stopped just before this evaluation: run it first, as the run would have
                end_interval(run, start_wall)
                tick = time.perf_counter()
            while st.iteration < total:
                it = st.iteration
                epoch, k = divmod(it, spe)
                if epoch != perm_epoch:  # the epoch's shuffle, from (seed, epoch) alone
                    perm, perm_epoch = epoch_permutation(run, epoch), epoch
                if bar is None and cfg.log.progress and not w.quiet:
                    bar = epoch_progress(epoch, spe, k, total)
                # ---- step ----
                lr, loss, wrong, batch = step(run, perm[k * cfg.train.batch_size:(k + 1) * cfg.train.batch_size], it)
                done_this_call += 1
                observe_warmup(run, wrong, batch)
                bad = show_progress(run, bar, loss, wrong, batch, lr, tick, start_wall)
                stopping = stop.requested or (stop_after is not None and done_this_call >= stop_after)
                if ctx.enabled:  # a stop (signal on any rank) or a bad loss is agreed at this very step by all
                    stopping, any_bad = ctx.agree(stopping, bad is not None)
                    bad = (float("nan") if bad is None else bad) if any_bad else None
                if bad is not None:
                    fail_nonfinite(run, bad, bar)
                # ---- what this iteration calls for ----
                do = decide(st.iteration, cadence, stopping)
                if do.snapshot:
                    w.save(partial(payload, run, "snapshot"), layout.snapshot_name(st.iteration))
                if do.log:
                    log_point(run, lr)
                if do.tick_end:
                    tick_end(run, tick, start_wall)
                if do.close_bar and bar is not None:
                    bar.close()
                    bar = None
                if do.evaluate:
                    end_interval(run, start_wall)
                if do.stop:  # a stop does not wait for an evaluation: it is kept pending
                    return stop_run(run, bar, stop.signum, pending_eval=do.pending_eval)
                if do.tick_end:
                    tick = time.perf_counter()
    except OSError as e:  # disk full, permissions: say so; every checkpoint written so far is complete
        raise ReslabError(f"cannot write to {w.run_dir} ({e.strerror or e}); the last good checkpoint is kept: "
                          f"free space or fix permissions, then reslab train --resume {w.run_dir}") from None
    return finish(run, bar)


# ---- the loop's steps, in the order it takes them ---------------------------------------------------------------

def epoch_permutation(run: Run, epoch: int) -> torch.Tensor:
    g = torch.Generator(device=run.setup.dev)
    g.manual_seed(mix_seed(run.setup.cfg.train.seed, 1, epoch))
    return torch.randperm(run.setup.prep.n_train, generator=g, device=run.setup.dev)


def step(run: Run, idx: torch.Tensor, it: int):
    """One optimiser step on the batch `idx` at iteration `it`: (lr, loss, wrong, images in the batch)."""
    cfg, p, st = run.setup.cfg, run.setup.prep, run.state
    x, y = training_batch(p.train_x, p.train_y, idx, p.normalizer,
                          augment_seed=mix_seed(cfg.train.seed, 2, it) if cfg.data.augment else None,
                          pad=cfg.data.pad, pad_fill=cfg.data.pad_fill, channels_last=cfg.train.channels_last,
                          shard=run.setup.shard)
    lr = run.setup.lrs.lr(it)
    if run.setup.graph is not None:
        loss, out = run.setup.graph.step(x, y, lr)  # static outputs of the graph: read below, before the next step
    else:
        for group in run.setup.optimizer.param_groups:
            group["lr"] = lr
        loss, out = train_step(run.setup.step_model, run.setup.optimizer, run.setup.scaler, x, y, cfg.train.amp)
    wrong = (out.argmax(1) != y).sum()
    st.progress.loss_sum += loss.double() * y.shape[0]
    st.progress.wrong += wrong
    st.progress.seen += y.shape[0]
    st.iteration = it + 1
    return lr, loss, wrong, y.shape[0]


def observe_warmup(run: Run, wrong: torch.Tensor, batch: int) -> None:
    """The paper's ResNet-110 warm-up: lr 0.01 until the training error (over 50 batches) is below 80%."""
    st, ctx, cfg = run.state, run.setup.ctx, run.setup.cfg
    if not run.setup.lrs.needs_error(st.iteration - 1):
        return
    st.warmup_errors += ctx.all_reduce_(wrong.clone()) if ctx.enabled else wrong
    st.warmup_seen += batch * ctx.world_size  # the global batch: every rank decides alike
    if st.warmup_seen >= 50 * cfg.train.batch_size:
        err = 100.0 * float(st.warmup_errors) / st.warmup_seen
        if run.setup.lrs.observe_error(st.iteration, err):
            run.writer.log(f"warm-up ends at iteration {st.iteration}: training error {err:.1f}% "
                           f"< {cfg.optim.warmup_until_train_error}%; lr back to {cfg.optim.lr}")
        st.warmup_errors.zero_()
        st.warmup_seen = 0


def show_progress(run: Run, bar: EpochBar | PlainProgress | None, loss, wrong, batch: int, lr: float, tick: float,
                  start_wall: float) -> float | None:
    """Advance the bar; every 20 iterations read the loss (the only per-step host sync) and show it with the whole
    run's ETA (the wall time per iteration so far, evaluations included). Returns a non-finite loss it read
    (the loop fails the run on it, every rank together when distributed), else None."""
    if bar is None:
        return None
    st = run.state
    bar.update()
    if st.iteration % 20 and st.iteration != run.setup.sched.iterations:
        return None
    cur = float(loss)
    if not math.isfinite(cur):
        return cur
    elapsed = time.perf_counter() - start_wall
    run_eta = (run.setup.sched.iterations - st.iteration) * elapsed / max(st.iteration, 1)
    bar.show(status(cur, 100.0 * float(wrong) / batch, lr,
                    rate(st.progress.seen, st.progress.seconds + time.perf_counter() - tick), run_eta))
    return None


def log_point(run: Run, lr: float) -> None:
    """A point of the dense training curve: the mean loss/error since the previous point."""
    st = run.state
    loss_sum, wrong_sum, seen = train_totals(run)
    mark_loss, mark_wrong, mark_seen = st.log_mark
    if seen > mark_seen:
        st.train_log.append({"iteration": st.iteration, "train_loss": (loss_sum - mark_loss) / (seen - mark_seen),
                             "train_error": 100.0 * (wrong_sum - mark_wrong) / (seen - mark_seen), "lr": lr})
    st.log_mark = [loss_sum, wrong_sum, seen]
    if seen > mark_seen:
        run.trackers.log_point(st.train_log[-1], st.iteration)


def tick_end(run: Run, tick: float, start_wall: float) -> None:
    """Close the timed stretch of training that began at `tick` (evaluation time is not training time)."""
    torch_sync(run.setup.dev)
    now = time.perf_counter()
    run.state.progress.seconds += now - tick
    run.state.wall_seconds = now - start_wall


def end_interval(run: Run, start_wall: float) -> None:
    """Evaluate, record the metrics row (and best point), write the logs, checkpoint."""
    st, w, p = run.state, run.writer, run.setup.prep
    if run.setup.cfg.log.progress and not w.quiet:
        announce(f"evaluating at iteration {st.iteration}: {p.val_x.shape[0]} validation and {p.test_x.shape[0]} "
                 f"test images ...")
    row = eval_row(run)
    st.pending_eval = False
    row["wall_seconds"] = time.perf_counter() - start_wall
    if not math.isfinite(row["train_loss"]):
        fail_nonfinite(run, row["train_loss"], None)
    st.rows.append(row)
    if row.get("val_error") is not None and (st.best is None or row["val_error"] < st.best["val_error"]):
        st.best = dict(row)
        w.save(partial(payload, run, "best", row=row), layout.BEST_FILE)
    w.log(format_row(row, run.setup.sched.iterations, run.setup.sched.steps_per_epoch))
    run.trackers.log_row(row, st.iteration)
    st.progress = Progress.zeros(run.setup.dev)
    st.wall_seconds = time.perf_counter() - start_wall
    st.log_mark = [0.0, 0, 0]
    w.write_logs(st)
    save_resumable(run)
    w.write_summary(summarize(run, "running" if st.iteration < run.setup.sched.iterations else "finished"))


def stop_run(run: Run, bar: EpochBar | PlainProgress | None, signum: int | None, pending_eval: bool = False) -> Path:
    """Stopped on request: checkpoint at this step boundary and say how to go on. At an evaluation point the
    evaluation is not run but kept pending in the checkpoint (the resume runs it first). The summary names the
    signal (a cluster launcher requeues a run stopped by SLURM's SIGUSR2, not one stopped by hand)."""
    st, w, ctx = run.state, run.writer, run.setup.ctx
    if bar is not None:
        bar.close()
    st.pending_eval = pending_eval
    w.write_logs(st)
    save_resumable(run)
    w.write_summary(replace(summarize(run, "interrupted"), stopped_by=signal_name(signum),
                            evaluation_pending=pending_eval))
    how = f"reslab train --resume {w.run_dir}" if not ctx.enabled else (
        f"torchrun --nproc_per_node=N -m reslab train --resume {w.run_dir} "
        f"(or reslab train --nproc N --resume {w.run_dir})")
    w.log(f"stopped at iteration {st.iteration}/{run.setup.sched.iterations}"
          + (" before its evaluation (the resume runs it first)" if pending_eval else "")
          + f"; resume with: {how}", always=True)
    run.trackers.close("interrupted")
    return w.run_dir


def finish(run: Run, bar: EpochBar | PlainProgress | None) -> Path:
    if bar is not None:
        bar.close()
    w = run.writer
    if not w.main:
        return w.run_dir
    s = read_summary(w.run_dir)
    run.trackers.log_summary(s.to_json())
    run.trackers.close("finished")
    final, best = s.final, s.best
    if final is None:  # end_interval wrote the last row just now
        raise ReslabError(f"{w.run_dir}: the summary of the finished run has no final row")
    tested = final.get("test_error") is not None  # not with data.test_subset=0 (validation only)
    w.log(f"finished {w.run_dir}: final "
          + (f"test error {final['test_error']:.2f}%" if tested
             else f"val error {final['val_error']:.2f}% (no test set)")
          + (f", best val {best['val_error']:.2f}%" if best else "")
          + (f" (test {best['test_error']:.2f}% there)" if best and tested else "")
          + f", {s.wall_seconds:.0f}s", always=True)  # --quiet still gives the result
    return w.run_dir


def fail_nonfinite(run: Run, value: float, bar: EpochBar | PlainProgress | None) -> None:
    if bar is not None:
        bar.close()
    msg = (f"training loss became {value} by iteration {run.state.iteration}; the run is marked failed and its last "
           f"good checkpoint is kept (lower optim.lr or use a warm-up)")
    run.writer.write_summary(summarize(run, "failed", msg))
    raise NonFiniteLoss(msg)


# ---- what the steps above compute and write ------------------------------------------------------------------

def train_totals(run: Run) -> tuple[float, int, int]:
    """(loss sum, wrong, seen) since the last row, summed over every process."""
    acc, ctx = run.state.progress, run.setup.ctx
    if not ctx.enabled:
        return float(acc.loss_sum), int(acc.wrong), acc.seen
    v = torch.stack([acc.loss_sum, acc.wrong.double(), torch.tensor(float(acc.seen), dtype=torch.float64,
                                                                    device=run.setup.dev)])
    ctx.all_reduce_(v)
    return float(v[0]), int(v[1]), int(v[2])


def eval_row(run: Run) -> dict:
    """The metrics row of an evaluation: training statistics since the last row, validation and test error."""
    st, ctx, p = run.state, run.setup.ctx, run.setup.prep
    torch_sync(run.setup.dev)
    lr_now = run.setup.lrs.lr(max(st.iteration - 1, 0))
    loss_sum, wrong, seen = train_totals(run)
    acc = st.progress
    row = {"epoch": math.ceil(st.iteration / run.setup.sched.steps_per_epoch - 1e-9), "iteration": st.iteration,
           "train_loss": loss_sum / max(seen, 1), "train_error": 100.0 * wrong / max(seen, 1), "lr": lr_now,
           "seconds": acc.seconds, "images_per_s": rate(seen, acc.seconds) if acc.seconds else None}
    shard = None
    if ctx.enabled:  # each rank evaluates its share of the batches with rank 0's weights and BN statistics
        ctx.broadcast_buffers(run.setup.model)
        shard = (ctx.rank, ctx.world_size)
    final = st.iteration == run.setup.sched.iterations
    vectors = []
    if p.val_x.shape[0]:
        v, correct = measure(run, "val", p.val_x, p.val_y, shard)
        row.update(val_loss=v.loss, val_error=v.error)
        vectors.append(correct)
    if p.test_x.shape[0]:  # not with data.test_subset=0 (validation only)
        te, correct = measure(run, "test", p.test_x, p.test_y, shard)
        row.update(test_loss=te.loss, test_error=te.error)
        vectors.insert(0, correct)
        if final:  # the final test evaluation, kept whole for reports
            run.writer.write_test_eval({"iteration": st.iteration, **te.as_dict()})
    if final and p.probe_x.shape[0]:  # the train probe, once: training error without augmentation, eval-mode BN
        pr, correct = measure(run, "train_probe", p.probe_x, p.probe_y, shard)
        row.update(train_probe_error=pr.error)
        vectors.append(correct)
    run.writer.write_correct(correct_document(st.iteration, vectors))
    return row


def measure(run: Run, split: str, x: torch.Tensor, y: torch.Tensor,
            shard: tuple[int, int] | None) -> tuple[EvalResult, Correctness]:
    """One split evaluated as the run evaluates it, with which images it got right (for the paired verdicts)."""
    t, p = run.setup.cfg.train, run.setup.prep
    r = evaluate(run.setup.model, x, y, p.normalizer, batch_size=t.eval_batch_size, amp=t.amp,
                 channels_last=t.channels_last, classes=p.data.classes, shard=shard, keep_correct=True)
    if r.correct is None:
        raise ReslabError(f"the {split} evaluation returned no per-image correctness")  # keep_correct=True above
    return r, Correctness.from_tensor(split, p.digests[split], r.correct)


def payload(run: Run, kind: str, **extra) -> dict:
    s = run.setup
    return {**model_payload(kind, s.cfg, s.model, s.prep.normalizer, run.state.iteration), **extra}


def save_resumable(run: Run) -> None:
    """checkpoints/ckpt-<iteration>.pt: what a resume needs. With several processes the statistics since the
    last row are kept as totals and, for a resume with as many processes, per rank."""
    acc, ctx = run.state.progress, run.setup.ctx
    progress, per_rank = acc.state_dict(), None
    if ctx.enabled:
        per_rank = ctx.all_gather_object(acc.state_dict())
        progress = dict(per_rank[0])
        for p in per_rank[1:]:
            progress.update(loss_sum=progress["loss_sum"] + p["loss_sum"], wrong=progress["wrong"] + p["wrong"],
                            seen=progress["seen"] + p["seen"])
    build = partial(_resumable, run, progress, per_rank)
    run.writer.save_resumable(build, run.state.iteration, run.setup.cfg.train.keep_checkpoints)


def _resumable(run: Run, progress: dict, per_rank: list | None) -> dict:
    s = run.setup
    return resumable_payload(payload(run, "resumable"), s.optimizer, s.scaler, s.lrs, run.state, progress, per_rank)


def summarize(run: Run, status: str, error: str | None = None) -> RunSummary:
    st, cfg = run.state, run.setup.cfg
    final = st.rows[-1] if st.rows else None
    trained = [r for r in st.rows if r.get("images_per_s")]
    seen_s = sum(r["seconds"] for r in trained)
    ips = (sum(r["images_per_s"] * r["seconds"] for r in trained) / seen_s) if seen_s else None
    return RunSummary(
        status=status, error=error, model=cfg.model.name, shortcut=cfg.model.shortcut,
        parameters=run.setup.n_params, iterations_done=st.iteration, iterations=run.setup.sched.iterations,
        final=final,
        # "best" is chosen on the validation split only; the test error is reported *at* that point.
        best=st.best, best_selected_on="validation" if st.best else None,
        wall_seconds=st.wall_seconds, train_images_per_s=ips)


def describe(run: Run) -> str:
    """The run's one-line plan: model, device(s), data, schedule, normalisation."""
    cfg, ctx, t, p = run.setup.cfg, run.setup.ctx, run.setup.cfg.train, run.setup.prep
    spe, total = run.setup.sched.steps_per_epoch, run.setup.sched.iterations
    where = str(run.setup.dev) if not ctx.enabled else (
        f"{ctx.world_size} processes x {run.setup.dev} (DDP, {'nccl' if run.setup.dev.type == 'cuda' else 'gloo'}, "
        f"{t.batch_size // ctx.world_size} images each, {'sync' if t.sync_bn else 'per-process'} BN)")
    steps = (f"x{cfg.optim.gamma} at {run.setup.sched.milestones}" if cfg.optim.schedule == "step"
             else "decaying linearly to 0")
    return (f"{cfg.model.name} (shortcut {cfg.model.shortcut}, {run.setup.n_params:,} parameters) on {where}; "
            f"{p.n_train} train / {p.val_x.shape[0]} val / {p.test_x.shape[0]} test images; "
            f"{total} iterations = {total / spe:.2f} epochs of {spe} at batch {t.batch_size}; "
            f"lr {cfg.optim.lr} {steps}; normalisation {p.normalizer.describe()}; "
            f"{'fp32' if t.amp == 'none' else t.amp + ' autocast'}"
            f"{'; the step replayed as a CUDA graph' if run.setup.graph is not None else ''}"
            f"{'; BatchNorm+ReLU ' + run.setup.fused_bn if run.setup.dev.type == 'cpu' else ''}")


def format_row(r: dict, total: int, spe: int) -> str:
    val = f" | val {r['val_error']:.2f}%" if r.get("val_error") is not None else ""
    test = f" | test {r['test_error']:.2f}%" if r.get("test_error") is not None else ""
    ips = f" | {r['images_per_s']:.0f} img/s" if r.get("images_per_s") else ""
    return (f"epoch {r['epoch']:>3} it {r['iteration']:>6}/{total} | train loss {r['train_loss']:.4f} "
            f"err {r['train_error']:.2f}%{val}{test} | lr {r['lr']:.4g}{ips} "
            f"| {r['seconds']:.1f}s")
