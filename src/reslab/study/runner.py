"""Run a grid of trainings into one study directory; rerunning the same study skips what is done.

Layout:  STUDY/study.json          what was asked (kind, profile, base config, the runs)
         STUDY/runs/<name>/        one ordinary reslab run directory per grid cell (e.g. plain56-s0)
         STUDY/report/             report.md, report.html, figures (rebuilt from the runs at the end)

One device: runs train in this process, one after another, sharing one copy of the data in memory.
Several devices (--devices cuda:0,cuda:1): one worker per device, each run in its own `reslab train` process.
"""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reslab import ReslabError
from reslab.config import dump_yaml, from_dict, from_flat, to_dict, validate
from reslab.engine import runs
from reslab.engine.checkpoint import atomic_write_text

STUDY_FILE = "study.json"


@dataclass
class RunSpec:
    name: str                     # directory name inside STUDY/runs
    overrides: dict               # flat config overrides on top of the study's base config
    group: str = ""               # e.g. "plain" / "resnet" (for the report)
    depth: int | None = None


@dataclass
class StudySpec:
    kind: str
    profile: str
    base_config: dict
    runs: list[RunSpec] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "profile": self.profile, "base_config": self.base_config,
                "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_json(cls, d: dict) -> "StudySpec":
        return cls(d["kind"], d["profile"], d["base_config"], [RunSpec(**r) for r in d["runs"]])

    def run_config(self, run: RunSpec):
        return validate(from_flat(run.overrides, from_dict(self.base_config)))


def run_status(run_dir: Path) -> str:
    """missing | running/interrupted (resumable) | finished | failed"""
    if not run_dir.exists():
        return "missing"
    s = run_dir / runs.SUMMARY_FILE
    if not s.exists():
        return "interrupted"
    return runs.read_json(s).get("status", "interrupted")


def _comparable(spec: StudySpec) -> dict:
    """The spec with its base config completed by today's defaults, so a study made before a config field
    existed still matches the same command (the new field at its default changes nothing it trained)."""
    d = spec.to_json()
    try:
        d["base_config"] = to_dict(from_dict(d["base_config"]))
    except ReslabError:  # a field that no longer exists: compare as stored (and so differ)
        pass
    return d


def open_study(spec: StudySpec, out: Path) -> Path:
    """Create the study directory, or reopen it if it holds the same study; never mix two studies."""
    out = Path(out)
    f = out / STUDY_FILE
    if f.exists():
        old, new = _comparable(StudySpec.from_json(runs.read_json(f))), _comparable(spec)
        if old != new:
            diff = [k for k in ("kind", "profile", "base_config", "runs") if old[k] != new[k]]
            raise ReslabError(f"{out} holds a different study (its {', '.join(diff)} differ); pass --out NEW_DIR "
                              f"for a new study, or rerun the original command to resume it")
        return out
    if out.exists() and any(out.iterdir()):
        raise ReslabError(f"{out} exists and is not a reslab study; pass --out NEW_DIR")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs.write_json(f, spec.to_json())
    atomic_write_text(out / "base_config.yaml", dump_yaml(from_dict(spec.base_config)))
    return out


def run_study(spec: StudySpec, out: Path, *, devices: list[str] | None = None, data=None, quiet: bool = False,
              report: bool = True, log=print) -> Path:
    from reslab.engine.trainer import NonFiniteLoss, train

    out = open_study(spec, Path(out))
    for r in spec.runs:  # fail fast on a bad grid cell, before any training
        spec.run_config(r)
    todo = []
    for r in spec.runs:
        st = run_status(out / "runs" / r.name)
        if st in ("finished", "failed"):
            log(f"[study] {r.name}: {st}, skipped")
        else:
            todo.append((r, st))
    devices = devices or [None]
    if len(devices) == 1:
        if todo and data is None:
            from reslab.data import load_cifar10
            data = load_cifar10(spec.run_config(todo[0][0]).data.dir)
        for i, (r, st) in enumerate(todo, 1):
            log(f"[study] ({i}/{len(todo)}) {r.name}: {'resuming' if st != 'missing' else 'training'}")
            try:
                if st == "missing":
                    train(spec.run_config(r), runs_dir=out / "runs", run_name=r.name, data=data,
                          device=devices[0], quiet=quiet)
                else:
                    train(resume=out / "runs" / r.name, data=data, device=devices[0], quiet=quiet)
            except NonFiniteLoss as e:
                log(f"[study] {r.name} failed: {e}; carrying on with the other runs")
            if run_status(out / "runs" / r.name) == "interrupted":
                log("[study] stopped; rerun the same command to resume")
                return out
    else:
        _run_parallel(spec, out, todo, devices, quiet, log)
    if report:
        from reslab.report import write_report
        paths = write_report(out)
        log(f"[study] report: {paths['md']} and {paths['html']}")
    return out


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
                       str(out / "runs"), "--run-name", r.name, "--device", device, "--quiet"]
                for k, v in r.overrides.items():
                    cmd += ["--set", f"{k}={_yaml_scalar(v)}"]
            else:
                cmd = [sys.executable, "-m", "reslab", "train", "--resume", str(out / "runs" / r.name),
                       "--device", device, "--quiet"]
            log(f"[study] {r.name} on {device}")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failures.append(r.name)
                log(f"[study] {r.name} on {device} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        log(f"[study] {len(failures)} run(s) did not finish: {', '.join(failures)}")


def _yaml_scalar(v) -> str:
    import yaml
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
