"""Run a grid of trainings into one study directory; rerunning the same study skips what is done.

One device: runs train in this process, one after another, sharing one copy of the data in memory.
Several devices (--devices cuda:0,cuda:1): one worker per device, each run in its own `reslab train` process.
This is the local launcher; reslab.launchers.slurm submits the same runs to a cluster. The runner holds the
study's lock while it runs (each training holds its run's). The report is not the runner's business: `reslab
study` calls `reslab.report.write_report` once this returns True.
"""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from reslab import layout
from reslab.data import load_dataset
from reslab.engine.trainer import NonFiniteLoss, train
from reslab.study.spec import StudySpec, open_study, run_status
from reslab.study.status import overall_line, study_status


def run_study(spec: StudySpec, out: Path, *, devices: list[str] | None = None, data=None, quiet: bool = False,
              log=print) -> bool:
    """Train every run of `spec` that has not ended into `out`. True when the study reached its end (every run
    finished or failed: the report can be built); False when it was stopped (rerun to resume)."""
    for r in spec.runs:  # fail fast on a bad grid cell, before anything is written
        spec.run_config(r)
    out = Path(out)
    with open_study(spec, out, warn=log):
        return train_grid(spec, out, devices, data, quiet, log)


def train_grid(spec: StudySpec, out: Path, devices: list[str] | None, data, quiet: bool, log) -> bool:
    """The runs that have not ended, in this process (one device) or one process per device."""
    todo = []
    for r in spec.runs:
        st = run_status(layout.study_run_dir(out, r.name))
        if st in ("finished", "failed"):
            log(f"[study] {r.name}: {st}, skipped")
        else:
            todo.append((r, st))
    if not devices or len(devices) == 1:
        device = devices[0] if devices else None  # None: train.device of each run's config
        if todo and data is None:
            first = spec.run_config(todo[0][0]).data
            data = load_dataset(first.dataset, first.dir)
        for r, st in todo:
            log(f"[study] run {spec.runs.index(r) + 1} of {len(spec.runs)}, {r.name}: "
                f"{'resuming' if st != 'missing' else 'training'}; {overall_line(study_status(out))}")
            try:
                if st == "missing":
                    train(spec.run_config(r), runs_dir=layout.study_runs_dir(out), run_name=r.name, data=data,
                          device=device, quiet=quiet)
                else:
                    train(resume=layout.study_run_dir(out, r.name), data=data, device=device, quiet=quiet)
            except NonFiniteLoss as e:
                log(f"[study] {r.name} failed: {e}; carrying on with the other runs")
            if run_status(layout.study_run_dir(out, r.name)) == "interrupted":
                log("[study] stopped; rerun the same command to resume")
                return False
    else:
        _run_parallel(spec, out, todo, devices, quiet, log)
    return True


def _run_parallel(spec: StudySpec, out: Path, todo, devices: list[str], quiet: bool, log) -> None:
    """One worker thread per device; each run is a separate `python -m reslab train` process."""
    jobs: queue.Queue = queue.Queue()
    for item in todo:
        jobs.put(item)
    cfg_file = out / "base_config.yaml"
    failures = []

    def worker(device: str):
        while True:
            try:
                r, st = jobs.get_nowait()
            except queue.Empty:
                return
            if st == "missing":
                cmd = [sys.executable, "-m", "reslab", "train", "--config", str(cfg_file), "--runs-dir",
                       str(layout.study_runs_dir(out)), "--run-name", r.name, "--device", device, "--quiet"]
                for k, v in spec.overrides(r).items():
                    cmd += ["--set", f"{k}={_yaml_scalar(v)}"]
            else:
                cmd = [sys.executable, "-m", "reslab", "train", "--resume", str(layout.study_run_dir(out, r.name)),
                       "--device", device, "--quiet"]
            log(f"[study] {r.name} on {device}")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(r.name)
                log(f"[study] {r.name} on {device} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
            log(f"[study] {r.name} on {device} ended; {overall_line(study_status(out))}")

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        log(f"[study] {len(failures)} run(s) did not finish: {', '.join(failures)}")


def _yaml_scalar(v) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
