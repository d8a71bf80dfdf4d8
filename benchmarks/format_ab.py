"""Issue 19's memory-format change alone, before vs after, interleaved in ONE process (less noise than
compare_commits.py's separate processes on a busy or virtualised CPU).

    python benchmarks/format_ab.py --model resnet56 --rounds 10 --steps 5

"before" is the option-A shortcut's subsample as slicing (x[:, :, ::s, ::s]) and the head's global pool as
mean((2, 3)), as at 35a6796; "after" is today's (`F.avg_pool2d(x, 1, s)`, a pool whose gradient keeps the
activations' memory format). Both train the same seed-0 model, channels_last, fp32 (or --amp bf16), on one
fixed batch, through the trainer's `train_step`; blocks of --steps steps alternate ABBA. Prints the median
img/s of each side and the median of the per-round ratios (after / before), with its range. The two sides are
bitwise equal by construction (tests/test_memory_format.py), so only time is compared.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from reslab.engine.step import train_step
from reslab.models import create_model
from reslab.models import resnet as R

AFTER = (R.PadShortcut.forward, R.GlobalAvgPool.forward)


def shortcut_before(self, x):
    if self.stride > 1:
        x = x[:, :, :: self.stride, :: self.stride]
    if self.pad_before or self.pad_after:
        x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
    return x


def pool_before(self, x):
    return x.mean((2, 3), keepdim=True)


SIDES = {"before": (shortcut_before, pool_before), "after": AFTER}


def timed_block(side: dict, steps: int, x, y, amp: str) -> float:
    R.PadShortcut.forward, R.GlobalAvgPool.forward = side["forwards"]
    t = time.perf_counter()
    for _ in range(steps):
        train_step(side["model"], side["opt"], side["scaler"], x, y, amp)
    return steps * x.shape[0] / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--amp", default="none", choices=("none", "bf16"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    sides = {}
    for name, forwards in SIDES.items():
        torch.manual_seed(0)
        model = create_model(args.model).to(memory_format=torch.channels_last).train()
        sides[name] = {"forwards": forwards, "model": model, "scaler": torch.amp.GradScaler("cpu", enabled=False),
                       "opt": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
    try:
        for side in sides.values():
            timed_block(side, 2, x, y, args.amp)  # warm-up
        ips: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
                ips[name].append(timed_block(sides[name], args.steps, x, y, args.amp))
    finally:
        R.PadShortcut.forward, R.GlobalAvgPool.forward = AFTER
    ratios = sorted(a / b for a, b in zip(ips["after"], ips["before"]))
    print(f"{args.model} {args.amp} batch {args.batch_size}: before {statistics.median(ips['before']):.1f} img/s, "
          f"after {statistics.median(ips['after']):.1f} img/s; per-round after/before median "
          f"{statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f}, {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
