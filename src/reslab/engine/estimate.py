"""How long a run will take, known before its first step: a short throughput probe and the one time model.

`measure_speed` times a few training steps (the trainer's own `training_batch` + `train_step`, in the run's
precision and memory format) and one evaluation batch on a throw-away copy of the model fed random images, with
the global RNG saved and restored: the run itself is untouched, bit for bit. `Speed.run_seconds` turns a
schedule into seconds — the training plan (`reslab train`), the time-budgeted study plan and a study's ETA
before any run has been measured all use it.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from reslab.config import Config
from reslab.data import Normalizer
from reslab.engine.device import torch_sync
from reslab.engine.evaluate import EvalOptions, evaluate
from reslab.engine.progress import rate
from reslab.engine.step import train_step, training_batch
from reslab.models import model_from_config

PROBE_STEPS = 6      # timed training steps (after PROBE_WARMUP untimed ones: allocator and kernel caches)
PROBE_WARMUP = 2


@dataclass
class Speed:
    """Measured throughput of one model on one device: training and evaluation images per second."""

    train_images_per_s: float
    eval_images_per_s: float

    def run_seconds(self, iterations: int, batch_size: int, evaluations: int, eval_images: int) -> float:
        """Seconds of `iterations` training steps plus `evaluations` passes over `eval_images` images."""
        return (iterations * batch_size / self.train_images_per_s
                + evaluations * eval_images / self.eval_images_per_s)

    def as_dict(self) -> dict:
        return {k: round(v, 1) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Speed":
        return cls(d["train_images_per_s"], d["eval_images_per_s"])


def evaluations(iterations: int, eval_every: int, done: int = 0) -> int:
    """Evaluation points in (done, iterations]: every `eval_every` iterations and at the end."""
    if iterations <= done:
        return 0
    return iterations // eval_every - done // eval_every + (iterations % eval_every != 0)


def measure_speed(cfg: Config, dev: torch.device) -> Speed:
    """Probe the training and evaluation throughput of `cfg`'s model on `dev` (a second or two on a CPU)."""
    t = cfg.train
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        model = model_from_config(cfg).to(dev)
        if t.channels_last:
            # torch's stubs type Module.to without its memory_format keyword (accepted at run time)
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = torch.amp.GradScaler(dev.type, enabled=t.amp == "fp16")
        n = max(t.batch_size, t.eval_batch_size)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=dev)
        classes = tuple(range(model_classes(model)))
        labels = torch.randint(0, len(classes), (n,), device=dev)
        norm = Normalizer("channel", torch.full((3,), 0.5), torch.full((3,), 0.25)).to(dev)
        idx = torch.arange(t.batch_size, device=dev)
        seconds = 0.0
        for i in range(PROBE_WARMUP + PROBE_STEPS):
            torch_sync(dev)
            start = time.perf_counter()
            x, y = training_batch(images, labels, idx, norm, augment_seed=i, pad=cfg.data.pad,
                                  pad_fill=cfg.data.pad_fill, channels_last=t.channels_last)
            train_step(model, opt, scaler, x, y, t.amp)
            torch_sync(dev)
            seconds += (time.perf_counter() - start) if i >= PROBE_WARMUP else 0.0
        train_ips = rate(PROBE_STEPS * t.batch_size, seconds)
        kw: EvalOptions = dict(batch_size=t.eval_batch_size, amp=t.amp, channels_last=t.channels_last,
                               classes=classes)
        ev = images[:t.eval_batch_size], labels[:t.eval_batch_size]
        evaluate(model, *ev, norm, **kw)  # warm
        start = time.perf_counter()
        evaluate(model, *ev, norm, **kw)
        eval_ips = rate(t.eval_batch_size, time.perf_counter() - start)
    return Speed(train_ips, eval_ips)


def model_classes(model: torch.nn.Module) -> int:
    """The number of outputs of the model's last linear layer (the class count)."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return last[-1].out_features if last else 10


def duration(seconds: float | None) -> str:
    """'45s', '14m', '3h52m' (None: '?')."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f}s"
    m = round(seconds / 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m"
