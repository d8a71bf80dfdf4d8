"""The training loop: the paper's protocol, iteration-based, exactly resumable.

Read it top to bottom: `train()` sets up data, model and optimiser, then steps through iterations. Every
random choice is derived from (seed, epoch) for the shuffle and (seed, iteration) for the augmentation, so a
run resumed at any step boundary sees exactly the images, crops and flips an uninterrupted run would — and,
with deterministic kernels, reaches bit-identical weights and metrics.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.config import Config, dump_yaml, from_dict, load_yaml, resolve_schedule, to_dict, validate
from reslab.data import Cifar10, Normalizer, load_cifar10, make_splits, mix_seed
from reslab.engine import distributed, runs
from reslab.engine.checkpoint import (load_checkpoint, load_weights, newest_good_checkpoint, prune_checkpoints,
                                      save_checkpoint)
from reslab.engine.evaluate import evaluate
from reslab.engine.schedule import LRSchedule
from reslab.engine.step import train_step, training_batch
from reslab.models import count_params, create_model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReslabError(f"--device {name}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}); use --device cpu or auto")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ReslabError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ReslabError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def model_depth(name: str) -> int | None:
    digits = "".join(ch for ch in name.split("_")[-1] if ch.isdigit()) or "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else None


def model_kwargs(cfg: Config) -> dict:
    """The keyword arguments `create_model` gets for this config (also stored in every checkpoint, so a
    checkpoint rebuilds its model without the config)."""
    kw = {"shortcut": cfg.model.shortcut}
    if cfg.model.zero_init_residual:
        kw["zero_init_residual"] = True
    for key in ("stem", "width"):  # ImageNet-style nets only; unset (null) keeps every older config's kwargs
        if getattr(cfg.model, key) is not None:
            kw[key] = getattr(cfg.model, key)
    return kw


def build_model(cfg: Config) -> torch.nn.Module:
    return create_model(cfg.model.name, **model_kwargs(cfg))


@dataclass
class Prepared:
    """Everything derived from data + config that training and evaluation share."""

    data: Cifar10
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    normalizer: Normalizer


def prepare_data(cfg: Config, device: torch.device, data: Cifar10 | None = None) -> Prepared:
    data = data or load_cifar10(cfg.data.dir)
    d = cfg.data
    s = make_splits(data.train_labels, data.test_labels, val_size=d.val_size, split_seed=d.split_seed,
                    train_subset=d.train_subset, val_subset=d.val_subset, test_subset=d.test_subset)
    train_x = data.train_images[s.train]
    norm = Normalizer.fit(train_x, d.normalization)
    put = lambda t: t.to(device)  # noqa: E731  (the whole data set lives on the training device)
    return Prepared(data, put(train_x), put(data.train_labels[s.train]), put(data.train_images[s.val]),
                    put(data.train_labels[s.val]), put(data.test_images[s.test]), put(data.test_labels[s.test]),
                    norm.to(device))


class StopRequest:
    """First SIGINT/SIGTERM: finish the current step, checkpoint, exit cleanly. Second: stop at once.

    echo_grace: a second signal this soon after the first is the same request (under torchrun a Ctrl-C reaches
    every worker twice: from the terminal, and forwarded by torchrun)."""

    def __init__(self, echo_grace: float = 0.0, announce: bool = True):
        self.requested = False
        self._old = {}
        self._first = None
        self.echo_grace, self.announce = echo_grace, announce

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker): no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            if self.echo_grace and time.monotonic() - self._first < self.echo_grace:
                return
            raise KeyboardInterrupt
        self.requested = True
        self._first = time.monotonic()
        if self.announce:
            print(f"\n{signal.Signals(signum).name} received: saving a checkpoint at the next step boundary "
                  f"(press Ctrl-C again to stop at once)", flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


@dataclass
class Progress:
    """Training statistics accumulated since the last metrics row (kept on the device: no per-step sync)."""

    loss_sum: torch.Tensor
    wrong: torch.Tensor
    seen: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, device):
        return cls(torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def state_dict(self):
        return {"loss_sum": self.loss_sum.cpu(), "wrong": self.wrong.cpu(), "seen": self.seen, "seconds": self.seconds}

    @classmethod
    def from_state_dict(cls, d, device):
        return cls(d["loss_sum"].to(device), d["wrong"].to(device), d["seen"], d["seconds"])


@dataclass
class State:
    iteration: int = 0
    rows: list = field(default_factory=list)
    best: dict | None = None
    wall_seconds: float = 0.0
    train_log: list = field(default_factory=list)  # the dense training curve (train_log.csv)
    # the global (loss sum, wrong, seen) of the current metrics interval at the last train_log point: the next
    # point is the difference, so the dense curve needs no accumulator (or per-rank state) of its own
    log_mark: list = field(default_factory=lambda: [0.0, 0, 0])
    status: str = "running"


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def train(cfg: Config | None = None, *, runs_dir: str | Path = "runs", resume: str | Path | None = None,
          data: Cifar10 | None = None, device: str | None = None, quiet: bool = False,
          stop_after: int | None = None, run_name: str | None = None) -> Path:
    """Train one model; returns its run directory.

    cfg         a validated Config (ignored with `resume`, which uses the run's own config)
    resume      a run directory to continue from its newest good checkpoint
    data        CIFAR-10 already in memory (studies load it once for many runs)
    device      overrides train.device (e.g. to resume a run on another device)
    stop_after  stop (with a checkpoint, as on Ctrl-C) after this many iterations in this call — for tests
    run_name    create exactly runs_dir/run_name (must not exist) instead of <model>-<timestamp>; studies use it

    Started by torchrun (WORLD_SIZE > 1), every process calls this: one model is trained with
    DistributedDataParallel, each process on its slice of every global batch, and only rank 0 writes
    (see reslab.engine.distributed).
    """
    ctx = distributed.setup()
    try:
        return _train(ctx, cfg, runs_dir=runs_dir, resume=resume, data=data, device=device, quiet=quiet,
                      stop_after=stop_after, run_name=run_name)
    finally:
        ctx.close()


def _silent(msg: str, always: bool = False) -> None:
    """The log of ranks other than 0: they print and write nothing."""


def _train(ctx: distributed.DistContext, cfg: Config | None, *, runs_dir, resume, data, device, quiet, stop_after,
           run_name) -> Path:
    ckpt = None
    quiet = quiet or not ctx.main
    if resume is not None:
        def find_checkpoint():  # rank 0 reads the run; every rank resumes from what it found
            run_dir = runs.require_run_dir(Path(resume))
            summary_path = run_dir / runs.SUMMARY_FILE
            if summary_path.exists() and runs.read_json(summary_path).get("status") == "finished":
                if not quiet:
                    print(f"{run_dir} already finished; nothing to resume")
                return run_dir, None, None
            log = runs.RunLog(run_dir, quiet)
            found = newest_good_checkpoint(run_dir / "checkpoints", log)
            if found is None:
                raise ReslabError(f"{run_dir} has no usable checkpoint to resume from; start a new run")
            ckpt_path, ckpt = found
            validate(from_dict(ckpt["config"]))
            own = load_yaml(run_dir / runs.CONFIG_FILE).get("model", {}).get("name")
            if own != ckpt["model"]["name"]:
                raise ReslabError(f"{ckpt_path} is a checkpoint of {ckpt['model']['name']}, but the run trains {own}")
            return run_dir, ckpt_path, ckpt

        run_dir, ckpt_path, ckpt = ctx.on_main(find_checkpoint)
        if ckpt is None:
            return run_dir
        cfg = validate(from_dict(ckpt["config"]))
        log = runs.RunLog(run_dir, quiet) if ctx.main else _silent
    elif cfg is None:
        raise ReslabError("train() needs a config or a run to resume")
    if device is not None:
        cfg.train.device = device
    t = cfg.train
    dev = ctx.device(t.device)
    shard = ctx.shard(t.batch_size) if ctx.enabled else None  # this process's rows of every global batch
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=dev.type != "cpu")
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # ---- data -------------------------------------------------------------------------------------------
    prep = prepare_data(cfg, dev, data)
    n_train = prep.train_x.shape[0]
    sched = resolve_schedule(cfg, n_train)
    spe, total = sched.steps_per_epoch, sched.iterations

    # ---- model, optimiser, schedule ----------------------------------------------------------------------
    torch.manual_seed(t.seed)
    model = build_model(cfg).to(dev)
    if t.sync_bn:
        model = ctx.convert_sync_bn(model, dev)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_params = count_params(model)
    # Weight decay on every parameter, BN included, as in the paper's Torch code and most reproductions.
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    lrs = LRSchedule(cfg, sched, model_depth(cfg.model.name))
    scaler = torch.amp.GradScaler(dev.type, enabled=t.amp == "fp16")
    # `model` stays the bare network (checkpoints hold its state dict); the steps run through DDP when distributed
    wrapped = ctx.wrap(model, dev, t.sync_bn)
    step_model = torch.compile(wrapped) if t.compile else wrapped

    def write_logs() -> None:  # rank 0: both CSVs, rewritten whole from the rows held in state
        runs.write_metrics(run_dir / runs.METRICS_FILE, state.rows)
        runs.write_metrics(run_dir / runs.TRAIN_LOG_FILE, state.train_log, runs.TRAIN_LOG_FIELDS)

    state = State()
    acc = Progress.zeros(dev)
    if ckpt is None:
        def create_run_dir():  # rank 0 only; the others learn the directory from it
            run_dir = runs.new_run_dir(Path(runs_dir), cfg.model.name, exact=run_name)
            try:
                (run_dir / "checkpoints").mkdir()
                (run_dir / runs.CONFIG_FILE).write_text(dump_yaml(cfg))
                env = runs.environment(dev, t.seed)
                if ctx.enabled:
                    env.update(world_size=ctx.world_size, backend="nccl" if dev.type == "cuda" else "gloo",
                               batch_per_process=t.batch_size // ctx.world_size, sync_bn=t.sync_bn)
                runs.write_json(run_dir / runs.ENV_FILE, env)
                runs.write_metrics(run_dir / runs.METRICS_FILE, [])
                runs.write_metrics(run_dir / runs.TRAIN_LOG_FILE, [], runs.TRAIN_LOG_FIELDS)
            except OSError as e:  # disk full, permissions: nothing trained yet, so nothing to resume
                raise ReslabError(f"cannot write to {run_dir} ({e.strerror or e}); nothing was trained") from None
            return run_dir

        run_dir = ctx.on_main(create_run_dir)
        log = runs.RunLog(run_dir, quiet) if ctx.main else _silent
        log(f"run {run_dir}")
    else:
        load_weights(model, ckpt["model_state"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        lrs.load_state_dict(ckpt["schedule"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        state = State(ckpt["iteration"], ckpt["rows"], ckpt["best"], ckpt["wall_seconds"],
                      ckpt.get("train_log", []), ckpt.get("log_mark", [0.0, 0, 0]))
        per_rank = ckpt.get("progress_ranks")
        if ctx.enabled and per_rank is not None and len(per_rank) == ctx.world_size:
            acc = Progress.from_state_dict(per_rank[ctx.rank], dev)  # each rank its own partial sums: exact
        elif ctx.main:
            acc = Progress.from_state_dict(ckpt["progress"], dev)  # the totals (another number of processes)
        if ctx.main:
            write_logs()
        log(f"resuming {run_dir} at iteration {state.iteration} from {ckpt_path.name}")

    where = str(dev) if not ctx.enabled else (
        f"{ctx.world_size} processes x {dev} (DDP, {'nccl' if dev.type == 'cuda' else 'gloo'}, "
        f"{t.batch_size // ctx.world_size} images each, {'sync' if t.sync_bn else 'per-process'} BN)")
    log(f"{cfg.model.name} (shortcut {cfg.model.shortcut}, {n_params:,} parameters) on {where}; "
        f"{n_train} train / {prep.val_x.shape[0]} val / {prep.test_x.shape[0]} test images; "
        f"{total} iterations = {total / spe:.2f} epochs of {spe} at batch {t.batch_size}; "
        f"lr {cfg.optim.lr} x{cfg.optim.gamma} at {sched.milestones}; normalisation {prep.normalizer.describe()}")
    tb = _tensorboard(run_dir, cfg) if ctx.main else None

    def payload(kind: str) -> dict:
        return {"kind": kind, "model": {"name": cfg.model.name, "kwargs": model_kwargs(cfg)},
                "model_state": model.state_dict(), "normalization": prep.normalizer.state_dict(),
                "config": to_dict(cfg), "iteration": state.iteration}

    def progress_state() -> tuple[dict, list | None]:
        """What a checkpoint keeps of the statistics since the last row: the totals over all processes and,
        when distributed, each rank's own partial sums (so a resume with as many processes is exact)."""
        if not ctx.enabled:
            return acc.state_dict(), None
        per_rank = ctx.all_gather_object(acc.state_dict())
        tot = dict(per_rank[0])
        for p in per_rank[1:]:
            tot.update(loss_sum=tot["loss_sum"] + p["loss_sum"], wrong=tot["wrong"] + p["wrong"],
                       seen=tot["seen"] + p["seen"])
        return tot, per_rank

    def save_resumable() -> None:
        progress, per_rank = progress_state()

        def write():
            ck = payload("resumable")
            ck.update(optimizer=optimizer.state_dict(), scaler=scaler.state_dict(), schedule=lrs.state_dict(),
                      rng=_rng_state(), rows=state.rows, best=state.best, wall_seconds=state.wall_seconds,
                      train_log=state.train_log, log_mark=state.log_mark,
                      progress=progress, warmup_window=[int(lrs_error_window), window_seen])
            if per_rank is not None:
                ck["progress_ranks"] = per_rank
            save_checkpoint(ck, run_dir / "checkpoints" / f"ckpt-{state.iteration:08d}.pt")
            prune_checkpoints(run_dir / "checkpoints", t.keep_checkpoints)

        ctx.on_main(write)  # rank 0 writes; the others wait for it there (a barrier) and share its errors

    def write_summary(status: str, error: str | None = None) -> None:
        if ctx.main:
            runs.write_json(run_dir / runs.SUMMARY_FILE, summarize(cfg, state, n_params, total, status, error))

    def train_totals() -> tuple[float, int, int]:
        """(loss sum, wrong, seen) since the last row, summed over every process."""
        if not ctx.enabled:
            return float(acc.loss_sum), int(acc.wrong), acc.seen
        v = torch.stack([acc.loss_sum, acc.wrong.double(), torch.tensor(float(acc.seen), dtype=torch.float64,
                                                                        device=dev)])
        ctx.all_reduce_(v)
        return float(v[0]), int(v[1]), int(v[2])

    def eval_row(epoch_float: float) -> dict:
        torch_sync(dev)
        lr_now = lrs.lr(max(state.iteration - 1, 0))
        loss_sum, wrong, seen = train_totals()
        row = {"epoch": math.ceil(epoch_float - 1e-9), "iteration": state.iteration,
               "train_loss": loss_sum / max(seen, 1),
               "train_error": 100.0 * wrong / max(seen, 1), "lr": lr_now,
               "seconds": acc.seconds, "images_per_s": seen / acc.seconds if acc.seconds else None}
        kw = dict(batch_size=t.eval_batch_size, amp=t.amp, channels_last=t.channels_last)
        if ctx.enabled:  # each rank evaluates its share of the batches with rank 0's weights and BN statistics
            ctx.broadcast_buffers(model)
            kw["shard"] = (ctx.rank, ctx.world_size)
        if prep.val_x.shape[0]:
            v = evaluate(model, prep.val_x, prep.val_y, prep.normalizer, **kw)
            row.update(val_loss=v.loss, val_error=v.error)
        te = evaluate(model, prep.test_x, prep.test_y, prep.normalizer, **kw)
        row.update(test_loss=te.loss, test_error=te.error)
        if state.iteration == total and ctx.main:  # the final test evaluation, kept whole for reports
            runs.write_json(run_dir / runs.TEST_EVAL_FILE, {"iteration": state.iteration, **te.as_dict()})
        return row

    lrs_error_window = torch.zeros((), dtype=torch.int64, device=dev)
    window_seen = 0
    if ckpt is not None:
        lrs_error_window += ckpt["warmup_window"][0]
        window_seen = ckpt["warmup_window"][1]
    if ckpt is None:
        save_resumable()  # iteration 0: a resume is always possible, even after a crash in the first epoch
        write_summary("running")
    else:
        write_summary("running")
    if 0 in sched.snapshots and state.iteration == 0 and ctx.main:
        save_snapshot(run_dir, payload("snapshot"), 0)

    eval_every = t.eval_every or spe
    log_every = t.log_every or max(1, eval_every // 5)
    done_this_call = 0
    perm_epoch, perm = -1, None
    bar = None
    start_wall = time.perf_counter() - state.wall_seconds
    tick = time.perf_counter()
    model.train()
    try:
        with StopRequest(echo_grace=2.0 if ctx.enabled else 0.0, announce=ctx.main) as stop:
            while state.iteration < total:
                it = state.iteration
                epoch, k = divmod(it, spe)
                if epoch != perm_epoch:  # the epoch's shuffle, from (seed, epoch) alone
                    g = torch.Generator(device=dev)
                    g.manual_seed(mix_seed(t.seed, 1, epoch))
                    perm, perm_epoch = torch.randperm(n_train, generator=g, device=dev), epoch
                if bar is None and cfg.log.progress and not quiet:
                    bar = _bar(epoch, spe, k, total)
                idx = perm[k * t.batch_size:(k + 1) * t.batch_size]
                x, y = training_batch(prep.train_x, prep.train_y, idx, prep.normalizer,
                                      augment_seed=mix_seed(t.seed, 2, it) if cfg.data.augment else None,
                                      pad=cfg.data.pad, channels_last=t.channels_last, shard=shard)
                lr = lrs.lr(it)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, out = train_step(step_model, optimizer, scaler, x, y, t.amp)

                wrong = (out.argmax(1) != y).sum()
                acc.loss_sum += loss.double() * y.shape[0]
                acc.wrong += wrong
                acc.seen += y.shape[0]
                state.iteration = it + 1
                done_this_call += 1

                if lrs.needs_error(it):  # the paper's ResNet-110 warm-up: 0.01 until training error < 80%
                    lrs_error_window += ctx.all_reduce_(wrong.clone()) if ctx.enabled else wrong
                    window_seen += y.shape[0] * ctx.world_size  # the global batch: every rank decides alike
                    if window_seen >= 50 * t.batch_size:
                        err = 100.0 * float(lrs_error_window) / window_seen
                        if lrs.observe_error(state.iteration, err):
                            log(f"warm-up ends at iteration {state.iteration}: training error {err:.1f}% "
                                f"< {cfg.optim.warmup_until_train_error}%; lr back to {cfg.optim.lr}")
                        lrs_error_window.zero_()
                        window_seen = 0

                nonfinite = None
                if bar is not None:
                    bar.update(1)
                    if state.iteration % 20 == 0 or state.iteration == total:
                        cur = float(loss)
                        if not math.isfinite(cur):
                            if not ctx.enabled:
                                _fail_nonfinite(state, cur, write_summary, log, bar)
                            nonfinite = cur  # distributed: every rank stops on it below
                        bar.set_postfix_str(f"loss {cur:.3f} err {100.0 * float(wrong) / y.shape[0]:.1f}% "
                                            f"lr {lr:.4g} {acc.seen / max(acc.seconds + time.perf_counter() - tick, 1e-9):.0f} img/s")

                if state.iteration in sched.snapshots and state.iteration > 0 and ctx.main:
                    save_snapshot(run_dir, payload("snapshot"), state.iteration)

                at_eval = state.iteration % eval_every == 0 or state.iteration == total
                if at_eval or state.iteration % log_every == 0:  # a point of the dense training curve
                    loss_sum, wrong_sum, seen = train_totals()
                    mark_loss, mark_wrong, mark_seen = state.log_mark
                    if seen > mark_seen:
                        state.train_log.append({"iteration": state.iteration,
                                                "train_loss": (loss_sum - mark_loss) / (seen - mark_seen),
                                                "train_error": 100.0 * (wrong_sum - mark_wrong) / (seen - mark_seen),
                                                "lr": lr})
                    state.log_mark = [loss_sum, wrong_sum, seen]
                epoch_end = state.iteration % spe == 0 or state.iteration == total
                stopping = stop.requested or (stop_after is not None and done_this_call >= stop_after)
                if ctx.enabled:  # a stop (signal on any rank) or a bad loss is agreed at this very step by all
                    stopping, bad = ctx.agree(stopping, nonfinite is not None)
                    if bad:
                        _fail_nonfinite(state, float("nan") if nonfinite is None else nonfinite, write_summary,
                                        log, bar)
                if at_eval or stopping:
                    torch_sync(dev)
                    now = time.perf_counter()
                    acc.seconds += now - tick
                    state.wall_seconds = now - start_wall
                if at_eval:
                    if bar is not None:
                        bar.close()
                        bar = None
                    row = eval_row(state.iteration / spe)
                    row["wall_seconds"] = time.perf_counter() - start_wall
                    if not math.isfinite(row["train_loss"]):
                        _fail_nonfinite(state, row["train_loss"], write_summary, log, None)
                    state.rows.append(row)
                    if row.get("val_error") is not None and (state.best is None or
                                                             row["val_error"] < state.best["val_error"]):
                        state.best = dict(row)
                        if ctx.main:
                            best = payload("best")
                            best["row"] = row
                            save_checkpoint(best, run_dir / "checkpoints" / "best.pt")
                    log(format_row(row, total, spe))
                    if tb is not None:
                        for key in ("train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                                    "lr", "images_per_s"):
                            if row.get(key) is not None:
                                tb.add_scalar(key, row[key], state.iteration)
                        tb.flush()
                    acc = Progress.zeros(dev)
                    state.wall_seconds = time.perf_counter() - start_wall
                    state.log_mark = [0.0, 0, 0]
                    if ctx.main:
                        write_logs()
                    save_resumable()
                    write_summary("running" if state.iteration < total else "finished")
                elif epoch_end and bar is not None:
                    bar.close()
                    bar = None
                if stopping and state.iteration < total:
                    if bar is not None:
                        bar.close()
                    if ctx.main:
                        write_logs()
                    save_resumable()
                    write_summary("interrupted")
                    how = f"reslab train --resume {run_dir}" if not ctx.enabled else (
                        f"torchrun --nproc_per_node=N -m reslab train --resume {run_dir} "
                        f"(or reslab train --nproc N --resume {run_dir})")
                    log(f"stopped at iteration {state.iteration}/{total}; resume with: {how}", always=True)
                    if tb is not None:
                        tb.close()
                    return run_dir
                if at_eval or stopping:
                    tick = time.perf_counter()
    except OSError as e:  # disk full, permissions: say so; every checkpoint written so far is complete
        raise ReslabError(f"cannot write to {run_dir} ({e.strerror or e}); the last good checkpoint is kept: "
                          f"free space or fix permissions, then reslab train --resume {run_dir}") from None
    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()
    if not ctx.main:
        return run_dir
    s = runs.read_json(run_dir / runs.SUMMARY_FILE)
    log(f"finished {run_dir}: final test error {s['final']['test_error']:.2f}%"
        + (f", best val {s['best']['val_error']:.2f}% (test {s['best']['test_error']:.2f}% there)" if s.get("best") else "")
        + f", {s['wall_seconds']:.0f}s")
    return run_dir


def torch_sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


class NonFiniteLoss(ReslabError):
    pass


def _fail_nonfinite(state: State, value: float, write_summary, log, bar) -> None:
    if bar is not None:
        bar.close()
    msg = (f"training loss became {value} by iteration {state.iteration}; the run is marked failed and its last "
           f"good checkpoint is kept (lower optim.lr or use a warm-up)")
    write_summary("failed", msg)
    raise NonFiniteLoss(msg)


def save_snapshot(run_dir: Path, payload: dict, iteration: int) -> None:
    save_checkpoint(payload, run_dir / "checkpoints" / f"snapshot-{iteration:08d}.pt")


def summarize(cfg: Config, state: State, n_params: int, total: int, status: str, error: str | None) -> dict:
    final = state.rows[-1] if state.rows else None
    trained = [r for r in state.rows if r.get("images_per_s")]
    seen_s = sum(r["seconds"] for r in trained)
    ips = (sum(r["images_per_s"] * r["seconds"] for r in trained) / seen_s) if seen_s else None
    return {
        "status": status, "error": error, "model": cfg.model.name, "shortcut": cfg.model.shortcut,
        "parameters": n_params, "iterations_done": state.iteration, "iterations": total,
        "final": final,
        # "best" is chosen on the validation split only; the test error is reported *at* that point.
        "best": state.best, "best_selected_on": "validation" if state.best else None,
        "wall_seconds": state.wall_seconds, "train_images_per_s": ips,
    }


def format_row(r: dict, total: int, spe: int) -> str:
    val = f" | val {r['val_error']:.2f}%" if r.get("val_error") is not None else ""
    ips = f" | {r['images_per_s']:.0f} img/s" if r.get("images_per_s") else ""
    return (f"epoch {r['epoch']:>3} it {r['iteration']:>6}/{total} | train loss {r['train_loss']:.4f} "
            f"err {r['train_error']:.2f}%{val} | test {r['test_error']:.2f}% | lr {r['lr']:.4g}{ips} "
            f"| {r['seconds']:.1f}s")


def _bar(epoch: int, spe: int, k: int, total: int):
    from tqdm import tqdm

    steps = min(spe, total - epoch * spe)
    return tqdm(total=steps, initial=k, desc=f"epoch {epoch + 1}", leave=False, dynamic_ncols=True,
                mininterval=1.0)


def _tensorboard(run_dir: Path, cfg: Config):
    if not cfg.log.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: the report never needs it
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def load_run_checkpoint(path: Path, which: str = "last") -> tuple[dict, Path]:
    """A checkpoint from a run directory ('last' = newest resumable, 'best' = best on validation) or a file."""
    path = Path(path)
    if path.is_file():
        return load_checkpoint(path), path
    run_dir = runs.require_run_dir(path)
    if which == "best":
        p = run_dir / "checkpoints" / "best.pt"
        if not p.exists():
            raise ReslabError(f"{run_dir} has no best.pt (no validation split, or no evaluation yet); use --weights last")
        return load_checkpoint(p, require_checksum=True), p
    found = newest_good_checkpoint(run_dir / "checkpoints")
    if found is None:
        raise ReslabError(f"{run_dir} has no usable checkpoint")
    return found[1], found[0]
