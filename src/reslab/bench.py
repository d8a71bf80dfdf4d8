"""Benchmarks (`reslab bench train|eval`): reslab's real step against the conventional PyTorch pipeline, in one process.

Train: (a) reslab — data as uint8 on the device, one gather + normalise + pad/crop/flip per batch, channels_last,
the trainer's own `train_step`; (b) the conventional baseline — a map-style Dataset with per-sample random crop
(pad 4), horizontal flip, to-tensor and normalise (torchvision's own transforms on PIL images when torchvision
imports, otherwise the same per-sample ops on tensors), a DataLoader with 2 workers, NCHW fp32, eager model,
plain `torch.optim.SGD`. Both run the same model and batch size, interleaved A B A B ... so machine drift cancels;
the reported figure is the median over rounds. The baseline is fp32; reslab's side trains in the precision of
`--amp` (none = fp32; bf16; auto = what a run with train.amp=auto chooses here), and when that is not fp32 a
third side, reslab in fp32, runs in the same rounds so the precision's own gain is measured too.

Eval: reslab's evaluation (channels_last, inference_mode) with and without conv-BN folding, per image, against
reslab's training throughput.
"""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from reslab.data import Normalizer
from reslab.engine.device import choose_amp, fused_batchnorm, resolve_device
from reslab.engine.evaluate import evaluate
from reslab.engine.graph import GraphStep, use_graph
from reslab.engine.step import train_step, training_batch
from reslab.models import bn_act, count_macs, create_model
from reslab.models.fuse import fold_batchnorm

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _images(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


class _PerSampleDataset(torch.utils.data.Dataset):
    """The conventional map-style dataset: one image at a time through per-sample transforms."""

    def __init__(self, images_hwc, labels):
        self.images, self.labels = images_hwc, labels
        try:
            import torchvision.transforms as T
            from PIL import Image
            self.kind = "torchvision transforms on PIL images"
            self._pil = Image.fromarray
            self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                 T.Normalize(MEAN, STD)])
        except Exception:  # torchvision not importable: the same ops per sample, on tensors
            self.kind = "per-sample tensor transforms (torchvision not importable)"
            self._pil = None
            self.tf = None
            self.mean = torch.tensor(MEAN).view(3, 1, 1)
            self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.tf is not None:
            return self.tf(self._pil(self.images[i])), int(self.labels[i])
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        x = F.pad(x, (4, 4, 4, 4))
        oy, ox = torch.randint(0, 9, (2,)).tolist()
        x = x[:, oy:oy + 32, ox:ox + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x.float().div(255) - self.mean) / self.std, int(self.labels[i])


# Lines libkineto (under torch.profiler) writes to fd 2 on every profile: "USDT:<time> <pid>:<tid>
# SyncActivityProfilerHandler.cpp:52] profiler_start" and "... profiler_stop" — trace markers, not messages.
KINETO_MARKER = "USDT:"


@contextlib.contextmanager
def kineto_markers_dropped():
    """Capture fd 2 while the profiler runs and pass on every line but libkineto's trace markers. KINETO_LOG_LEVEL
    cannot do this: the markers rank above ERROR, so the level that hides them (6) hides kineto's errors too."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith(KINETO_MARKER)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


# Where a CPU training step's time goes, by the aten op that spends it (profiler self time). Checked in order; the
# first match names the part, and whatever matches none is "other" (adds, loss, optimizer, copies, the input).
# The fused kernel (models/bn_act.py) does batch-norm, the residual add and the ReLU in one op: its own part.
STEP_PARTS = (("convolution", ("conv",)), ("fused bn+add+relu", ("fusedbatchnormrelu",)),
              ("batch-norm", ("batch_norm",)), ("relu", ("threshold", "relu", "clamp_min")))


def step_part(op: str) -> str:
    key = op.lower()
    return next((part for part, keys in STEP_PARTS if any(k in key for k in keys)), "other")


def step_breakdown(step_fn, steps: int = 2) -> dict[str, float]:
    """Share of a CPU training step spent in each part (convolution, batch-norm, relu, other), from the profiler's
    self times; the shares add up to 1. The convolution share bounds what any change outside the convolutions can
    win: with everything else free, a step would still take that share of its time."""
    from torch.profiler import ProfilerActivity, profile
    with kineto_markers_dropped(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step_fn(steps)
    times = dict.fromkeys([part for part, _ in STEP_PARTS] + ["other"], 0.0)
    for e in prof.key_averages():
        times[step_part(e.key)] += e.self_cpu_time_total
    total = sum(times.values())
    return {part: (t / total if total else 0.0) for part, t in times.items()}


def conv_share(step_fn, steps: int = 2) -> float:
    """Share of a CPU training step spent inside convolution kernels (forward and backward)."""
    return step_breakdown(step_fn, steps)["convolution"]


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class ReslabSide:
    """(a) reslab's own step: uint8 images on the device, one gather + normalise + pad/crop/flip per batch,
    channels_last, the trainer's `train_step`. unfused=True: the same step with the fused BatchNorm+ReLU kernel
    switched off (PyTorch's own ops)."""

    def __init__(self, model_name: str, images, labels, batch_size: int, dev: torch.device, amp: str = "none",
                 graph: bool = False, unfused: bool = False):
        torch.manual_seed(0)
        self.amp, self.unfused = amp, unfused
        self.model = create_model(model_name).to(dev).to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.graph = GraphStep(self.model, self.opt, dev, amp) if graph else None  # the trainer's graphed step
        self.scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
        self.images, self.labels = images.to(dev), labels.to(dev)
        self.norm = Normalizer("channel", torch.tensor(MEAN), torch.tensor(STD)).to(dev)
        self.perm = torch.randperm(images.shape[0], device=dev)
        self.batch_size, self.cursor = batch_size, 0

    def batch(self):
        n_batches = self.images.shape[0] // self.batch_size
        k = self.cursor % n_batches
        self.cursor += 1
        return training_batch(self.images, self.labels, self.perm[k * self.batch_size:(k + 1) * self.batch_size],
                              self.norm, augment_seed=self.cursor, channels_last=True)

    def steps(self, n: int) -> None:
        with bn_act.enabled(False) if self.unfused else contextlib.nullcontext():
            self.run_steps(n)

    def run_steps(self, n: int) -> None:
        for _ in range(n):
            x, y = self.batch()
            if self.graph is not None:
                loss, _ = self.graph.step(x, y, 0.01)
            else:
                loss, _ = train_step(self.model, self.opt, self.scaler, x, y, self.amp)
        if n:
            float(loss)  # one host sync per round, as the trainer syncs rarely (loss is detached)


class BaselineSide:
    """(b) the conventional pipeline: per-sample transforms in a DataLoader, NCHW fp32, eager, torch.optim.SGD."""

    def __init__(self, model_name: str, images, labels, batch_size: int, dev: torch.device, workers: int):
        torch.manual_seed(0)
        self.model = create_model(model_name).to(dev)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.ds = _PerSampleDataset(images.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy())
        self.loader = torch.utils.data.DataLoader(self.ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                                  drop_last=True, persistent_workers=workers > 0,
                                                  pin_memory=dev.type == "cuda")
        self.it, self.dev = iter(self.loader), dev

    def steps(self, n: int) -> None:
        for _ in range(n):
            try:
                x, y = next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                x, y = next(self.it)
            x, y = x.to(self.dev, non_blocking=True), y.to(self.dev, non_blocking=True)
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        float(loss.detach())

    def close(self) -> None:
        self.it = None  # drops the iterator: its persistent workers shut down


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def interleaved(sides: dict, rounds: int, steps: int, batch_size: int, dev: torch.device, log) -> dict[str, list]:
    """Images per second of each side, one measurement per round, the sides taking turns (A B A B ...)."""
    ips = {name: [] for name in sides}
    for r in range(rounds):
        for name, side in sides.items():
            _sync(dev)
            t = time.perf_counter()
            side.steps(steps)
            _sync(dev)
            ips[name].append(steps * batch_size / (time.perf_counter() - t))
        log(f"  round {r + 1}: " + ", ".join(f"{name} {v[-1]:.0f} img/s" for name, v in ips.items()))
    return ips


def pipeline_seconds(side: ReslabSide, dev: torch.device, batches: int = 20) -> float:
    """Seconds reslab spends preparing one batch (gather, normalise, augment) — its input pipeline alone."""
    _sync(dev)
    t = time.perf_counter()
    for _ in range(batches):
        side.batch()
    _sync(dev)
    return (time.perf_counter() - t) / batches


def bench_train(model_name: str = "resnet20", batch_size: int = 128, rounds: int = 6, steps: int = 8,
                warmup: int = 3, device: str = "cpu", workers: int = 2, n_images: int = 10_000,
                amp: str = "none", cuda_graph: str = "off", baseline: bool = True, log=print) -> dict:
    """reslab's step against the baseline (and, where they differ, against reslab in fp32 and reslab eager),
    interleaved. cuda_graph (off | on | auto, as train.cuda_graph): reslab's side replays its step as a CUDA graph,
    and a side "reslab_eager" runs the same precision eagerly. baseline=False: reslab's sides only (several
    benchmarks sharing one GPU measure reslab, not the DataLoader)."""
    dev = resolve_device(device)
    amp, amp_why = choose_amp(amp, dev)
    graph = use_graph(cuda_graph, dev, amp)
    images, labels = _images(n_images)
    macs = count_macs(create_model(model_name))
    fused = fused_batchnorm(dev, True, False, notify=log)
    a_side = ReslabSide(model_name, images, labels, batch_size, dev, amp, graph)
    sides = {"reslab": a_side}
    if bn_act.active():
        sides["reslab_unfused"] = ReslabSide(model_name, images, labels, batch_size, dev, amp, unfused=True)
    if graph:
        sides["reslab_eager"] = ReslabSide(model_name, images, labels, batch_size, dev, amp)
    if amp != "none":
        sides["reslab_fp32"] = ReslabSide(model_name, images, labels, batch_size, dev)
    b_side = sides["baseline"] = (BaselineSide(model_name, images, labels, batch_size, dev, workers) if baseline
                                  else None)
    log(f"bench train: {model_name}, batch {batch_size} on {dev}, reslab in {precision(amp)}"
        + (f" ({amp_why})" if amp_why else "") + (", graphed (CUDA graph)" if graph else "")
        + f"; BatchNorm+ReLU {fused}"
        + f", {rounds} rounds x {steps} steps each side, interleaved"
        + (f"; baseline = DataLoader({workers} workers) + {b_side.ds.kind}, fp32" if b_side else "; no baseline"))
    if b_side is None:
        del sides["baseline"]
    for side in sides.values():
        side.steps(max(warmup, 4 if graph else 0))  # a graphed side captures after its eager warm-up steps
    ips = interleaved(sides, rounds, steps, batch_size, dev, log)
    pipe = pipeline_seconds(a_side, dev)
    a = statistics.median(ips["reslab"])
    step_time = batch_size / a
    res = {
        "kind": "train", "model": model_name, "batch_size": batch_size, "device": str(dev),
        "amp": amp, "amp_why": amp_why, "cuda_graph": graph, **side_gain(ips, "reslab_fp32", "amp_speedup"),
        **side_gain(ips, "reslab_eager", "graph_speedup"),
        "fused_batchnorm_relu": fused, **side_gain(ips, "reslab_unfused", "fused_speedup"),
        "reslab_images_per_s": round(a, 1), "reslab_rounds": [round(v, 1) for v in ips["reslab"]],
        "macs_per_image": macs, "gflops_reslab": round(a * macs * 2 * 3 / 1e9, 2),
        "input_pipeline_ms": round(pipe * 1e3, 3), "input_pipeline_share": round(pipe / step_time, 4),
        "peak_memory_mb": round(_peak_memory_mb(dev), 1), **machine(dev),
    }
    if b_side is not None:
        b = statistics.median(ips["baseline"])
        res.update(baseline=f"DataLoader({workers} workers) + {b_side.ds.kind}, NCHW fp32, eager, torch.optim.SGD",
                   **speed_figures(ips), baseline_rounds=[round(v, 1) for v in ips["baseline"]],
                   gflops_baseline=round(b * macs * 2 * 3 / 1e9, 2))
        if dev.type == "cpu":
            res.update(cpu_ceiling(a_side, step_time, ips))
        b_side.close()
    return res


def cpu_ceiling(side: ReslabSide, step_time: float, ips: dict[str, list]) -> dict:
    """Where a CPU step's time goes: the convolutions (the same oneDNN kernels on both sides) set a ceiling on any
    speed-up that does not make the convolutions themselves faster."""
    parts = step_breakdown(side.steps)
    share = parts["convolution"]
    ceiling = speed_figures(ips, share)["ratio_ceiling_if_only_convs"]
    return {"conv_share": round(share, 4), "conv_ms_per_step": round(share * step_time * 1e3, 1),
            "ratio_ceiling_if_only_convs": ceiling,
            "step_breakdown": {part: {"share": round(v, 4), "ms_per_step": round(v * step_time * 1e3, 1)}
                               for part, v in parts.items()}}


def side_gain(ips: dict[str, list], side: str, speedup_key: str) -> dict:
    """reslab against one of its own variants (`side`: reslab_eager, reslab_fp32 or reslab_unfused), medians of
    the same interleaved rounds: the side's images/s and rounds, and reslab's speed over it as `speedup_key`.
    Empty when the run had no such side."""
    if side not in ips:
        return {}
    a, s = statistics.median(ips["reslab"]), statistics.median(ips[side])
    return {f"{side}_images_per_s": round(s, 1), speedup_key: round(a / s, 3),
            f"{side}_rounds": [round(v, 1) for v in ips[side]]}


def speed_figures(ips: dict[str, list], conv_share: float | None = None) -> dict:
    """From the interleaved rounds' images/s: each side's median, reslab's speed over the baseline's (`ratio`)
    and, given the convolutions' share of reslab's step, the ratio reached if everything but the convolutions
    took no time (`ratio_ceiling_if_only_convs`; None for a share of 0)."""
    a, b = statistics.median(ips["reslab"]), statistics.median(ips["baseline"])
    out = {"reslab_images_per_s": round(a, 1), "baseline_images_per_s": round(b, 1), "ratio": round(a / b, 3)}
    if conv_share is not None:
        out["ratio_ceiling_if_only_convs"] = round(a / (b * conv_share), 3) if conv_share else None
    return out


def precision(amp: str) -> str:
    return "fp32" if amp == "none" else f"{amp} autocast"


def bench_eval(model_name: str = "resnet20", batch_size: int = 250, n_images: int = 2000, device: str = "cpu",
               train_images_per_s: float | None = None, log=print) -> dict:
    dev = resolve_device(device)
    images, labels = _images(n_images)
    images, labels = images.to(dev), labels.to(dev)
    norm = Normalizer("channel", torch.tensor(MEAN), torch.tensor(STD))
    model = create_model(model_name).to(dev).to(memory_format=torch.channels_last).eval()
    folded = fold_batchnorm(model)
    out = {}
    for name, m in (("plain_eval", model), ("folded_bn", folded)):
        evaluate(m, images[:batch_size], labels[:batch_size], norm, batch_size=batch_size, channels_last=True)
    times = {"plain_eval": [], "folded_bn": []}
    for _ in range(3):  # interleaved
        for name, m in (("plain_eval", model), ("folded_bn", folded)):
            t = time.perf_counter()
            evaluate(m, images, labels, norm, batch_size=batch_size, channels_last=True)
            times[name].append(n_images / (time.perf_counter() - t))
    for k, v in times.items():
        out[f"{k}_images_per_s"] = round(statistics.median(v), 1)
        log(f"  {k}: {out[f'{k}_images_per_s']:.0f} img/s")
    res = {"kind": "eval", "model": model_name, "batch_size": batch_size, "device": str(dev), **out,
           "folding_speedup": round(out["folded_bn_images_per_s"] / out["plain_eval_images_per_s"], 3), **machine()}
    if train_images_per_s:
        res["train_images_per_s"] = round(train_images_per_s, 1)
        res["eval_over_train"] = round(out["folded_bn_images_per_s"] / train_images_per_s, 2)
    return res


def machine(dev: torch.device | None = None) -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    flags = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": flags or platform.processor(),
           "python": platform.python_version()}
    if dev is not None and dev.type == "cuda":
        out.update(gpu=torch.cuda.get_device_name(dev),
                   capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return out
