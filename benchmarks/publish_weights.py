"""Publish a finished paper-protocol run's final weights as reslab's own (`create_model(name, pretrained="reslab")`).

    python benchmarks/publish_weights.py /work/runs/paper-resnet20 --data-dir ../shared/data

Writes a slim reslab checkpoint (weights, BN statistics, normalisation, config; no optimizer state) of the run's
*final* iteration — never a best epoch picked on a test set — into src/reslab/weights/published/, evaluates that
file as a user would load it (fp32, the full 10k test set), and prints the line to add to PUBLISHED in
src/reslab/weights/table.py. Refuses a run that has not finished its schedule.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.data import Normalizer, load_cifar10
from reslab.engine.evaluate import evaluate
from reslab.engine.summary import RunSummary, read_summary
from reslab.models import create_model
from reslab.weights.files import FORMAT, VERSION, atomic_write_bytes, load_run_checkpoint
from reslab.weights.store import BUNDLED_DIR


def slim(ckpt: dict, run_dir: Path, summary: RunSummary) -> dict:
    keep = ("model", "model_state", "normalization", "config", "iteration")
    return {"format": FORMAT, "version": VERSION, "kind": "published", **{k: ckpt[k] for k in keep},
            "source": {"project": "reslab", "run": run_dir.name, "final_test_error": summary.final["test_error"],
                       "wall_seconds": summary.wall_seconds}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", type=Path, default=BUNDLED_DIR, help="default: the package's published/ folder")
    args = ap.parse_args(argv)
    ckpt, path = load_run_checkpoint(args.run_dir, "last")
    planned = ckpt["config"]["train"]["iterations"]
    summary = read_summary(args.run_dir)
    status = summary.status
    if status != "finished" or ckpt["iteration"] != planned:
        raise ReslabError(f"{args.run_dir} has not finished (status {status}, checkpoint at iteration "
                          f"{ckpt['iteration']} of {planned}): resume it first")
    buf = io.BytesIO()
    torch.save(slim(ckpt, args.run_dir, summary), buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    name = ckpt["model"]["name"]
    out = args.out_dir / f"{name}-paper-{sha[:8]}.pt"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    model = create_model(name, pretrained=out).to(memory_format=torch.channels_last)
    cifar = load_cifar10(args.data_dir)
    res = evaluate(model, cifar.test_images, cifar.test_labels, Normalizer.from_model(model), batch_size=500,
                   channels_last=True)
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB) from {path}")
    print(f"fp32 test error of the file: {res.error:.2f}% on {res.n} images "
          f"(the run's own final evaluation, in its precision: {summary.final['test_error']:.2f}%)")
    print(f'add to PUBLISHED: reslab_weights("{name}", "{sha}", {res.error:.2f}, "...")')
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReslabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
