"""Long version of the kill -9 test: SIGKILL a real training run at N random moments, resume each time, and
check that the final metrics.csv and weights are bit-identical to an uninterrupted run of the same config.

    python benchmarks/kill_resume.py --data-dir ../shared/data --kills 20

Default config: resnet20 on a 2,000-image class-balanced subset for 2 epochs at batch 64 (so the
reference takes about a minute on a 2-core CPU), evaluated every 8 iterations on 200 val / 500 test images,
so kills land in steps, evaluations and checkpoint writes alike. Prints one JSON line with the figures.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reslab.weights.files import load_checkpoint, resumable_checkpoints
from reslab.engine.runs import read_metrics

TIMING = ("seconds", "images_per_s", "wall_seconds")


def cmd(data_dir, runs_dir, extra):
    return [sys.executable, "-m", "reslab", "train", "--model", "resnet20", "--data-dir", data_dir, "--runs-dir",
            str(runs_dir), "--quiet", "--epochs", "2", "--set", "data.train_subset=2000", "--set",
            "data.val_subset=200", "--set", "data.test_subset=500", "--set", "train.batch_size=64", "--set",
            "train.eval_every=8", "--set", "log.tensorboard=false", *extra]


def numbers(run):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.csv")]


def weights(run):
    return load_checkpoint(resumable_checkpoints(run / "checkpoints")[0])["model_state"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temp dir)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="reslab-kills-"))
    t0 = time.time()
    subprocess.run(cmd(a.data_dir, work / "ref", []), check=True)
    ref_seconds = time.time() - t0
    ref = next((work / "ref").iterdir())
    rng = random.Random(a.seed)
    proc = subprocess.Popen(cmd(a.data_dir, work / "cut", []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(work.glob("cut/*/checkpoints/ckpt-00000000.pt.sha256")):
        time.sleep(0.1)
    run = next((work / "cut").iterdir())
    kills, fallbacks = 0, 0
    while kills < a.kills:
        # wait until the (resumed) process is training, then kill it somewhere in the next stretch of work:
        # a step, an evaluation or a checkpoint write (a kill during Python start-up would test nothing)
        started = (run / "train.log").read_text().count("resuming") if kills else 0
        while proc.poll() is None and kills and (run / "train.log").read_text().count("resuming") <= started:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, ref_seconds / a.kills))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = subprocess.Popen([sys.executable, "-m", "reslab", "train", "--resume", str(run), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = proc.wait()
    log = (run / "train.log").read_text()
    fallbacks = log.count("falling back")
    same_metrics = numbers(run) == numbers(ref)
    wa, wb = weights(run), weights(ref)
    same_weights = all(torch.equal(wa[k], wb[k]) for k in wb)
    out = {"kills": kills, "exit_code": code, "resumes": log.count("resuming"), "fallbacks_to_older_checkpoint":
           fallbacks, "metrics_identical": same_metrics, "weights_identical": same_weights,
           "reference_seconds": round(ref_seconds, 1), "work": str(work)}
    print(json.dumps(out))
    sys.exit(0 if same_metrics and same_weights and code == 0 else 1)


if __name__ == "__main__":
    main()
