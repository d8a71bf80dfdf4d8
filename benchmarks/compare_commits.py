"""reslab's training step at two commits, in alternating rounds on one machine, with a bitwise check.

    python benchmarks/compare_commits.py --base 35a6796 --model resnet20 --amp bf16 --rounds 6

The base commit is checked out into a temporary git worktree (or pass --base-tree DIR). Each round runs one fresh
process per side, in the order base, new | new, base | base, new ... (ABBA), so a steady drift of the machine (a
neighbour, the clock) falls on both sides alike instead of always on the side that runs second. A process builds the
model from seed 0, takes `--warmup` steps, times `--steps` steps of reslab's own `ReslabSide` (the trainer's
`train_step` and input pipeline) and prints img/s and the sha256 of the weights after all its steps. Equal hashes on
both sides mean the two commits compute bit-for-bit the same training; the script says IDENTICAL or DIFFERENT and
prints the ratio of the medians (new / base).

Environment variables pass through, so ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 emulates a CPU without
native bf16 for both sides. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What one timed process runs; it imports reslab from the tree on PYTHONPATH.
CHILD = r"""
import hashlib, json, sys, time
import torch
from reslab.bench import ReslabSide, _images  # the base commit has no public name for it
model, amp, batch, steps, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
images, labels = _images(4 * batch)
side = ReslabSide(model, images, labels, batch, torch.device("cpu"), amp)
side.steps(warmup)
t = time.perf_counter()
side.steps(steps)
ips = steps * batch / (time.perf_counter() - t)
h = hashlib.sha256()
for k, v in side.model.state_dict().items():
    h.update(k.encode()); h.update(v.detach().float().contiguous().numpy().tobytes())
print(json.dumps({"ips": ips, "sha256": h.hexdigest()}))
"""


def worktree(base: str) -> Path:
    where = Path(tempfile.mkdtemp(prefix="reslab-base-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), base], check=True,
                   capture_output=True)
    return where


def one(tree: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    out = subprocess.run([sys.executable, "-c", CHILD, args.model, args.amp, str(args.batch_size), str(args.steps),
                          str(args.warmup)], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="35a6796", help="git revision to compare against")
    ap.add_argument("--base-tree", type=Path, help="an existing checkout of the base instead of a new worktree")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--amp", default="bf16", choices=("none", "bf16"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the rounds and the summary here")
    args = ap.parse_args(argv)
    base_tree = args.base_tree or worktree(args.base)
    sides = {"base": base_tree, "new": ROOT}
    runs = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in (("base", "new") if r % 2 == 0 else ("new", "base")):
            runs[name].append(one(sides[name], args))
        print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]['ips']:.0f} img/s" for n, v in runs.items()), flush=True)
    med = {n: statistics.median(x["ips"] for x in v) for n, v in runs.items()}
    hashes = {n: {x["sha256"] for x in v} for n, v in runs.items()}
    same = len(hashes["base"] | hashes["new"]) == 1
    ratio = med["new"] / med["base"]
    print(f"{args.model} {args.amp} batch {args.batch_size}: base {med['base']:.1f} img/s, new {med['new']:.1f} img/s, "
          f"ratio {ratio:.3f}x; weights after {args.warmup + args.steps} steps: "
          + ("IDENTICAL" if same else "DIFFERENT"))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "amp": args.amp, "batch_size": args.batch_size,
                                         "base": args.base, "rounds": {n: [round(x["ips"], 1) for x in v]
                                                                       for n, v in runs.items()},
                                         "median": med, "ratio": round(ratio, 3), "identical": same,
                                         "env": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY",
                                                                            "ONEDNN_MAX_CPU_ISA")
                                                 if k in os.environ}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
