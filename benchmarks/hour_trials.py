"""The validation trials that choose the hour profile's schedule shape and budget (docs/hour-study.md).

Each trial is the hour profile's degradation study (plain20, plain56, resnet20, resnet56) sized by a wall-time
budget, in one schedule shape, with test evaluation off (data.test_subset=0): the runs never look at a test
image, so nothing here can be fished on test. The trials run one after another, each in ROOT/<trial> (outside
the repository); rerunning the command skips finished trials and resumes an interrupted one where it stopped
(a study keeps the plan it started with). Then the table's rows are printed, from validation numbers only.

    PYTHONPATH=src python benchmarks/hour_trials.py --root ~/reslab-hour-trials            # run all, print rows
    PYTHONPATH=src python benchmarks/hour_trials.py --root ~/reslab-hour-trials --only 60m-linear
    PYTHONPATH=src python benchmarks/hour_trials.py --root ~/reslab-hour-trials --table    # rows only, runs nothing
    PYTHONPATH=src python benchmarks/hour_trials.py --root /tmp/x --dry-run                # the commands only

Run them on the machine the frozen profile will run on, with nothing else running on it: wall time is part of
what is measured.
"""
import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (name, --budget, optim.schedule): the trials of docs/hour-study.md, in the order they run. The first four choose
# the shape at the target hour and below it; the later ones say where the depth claim begins to separate if an
# hour does not (run them with --only when the ones before call for it): neither 90m-linear nor 120m-linear did
# (resnet56 0.06 points above resnet20 at 120m), so 180m-linear comes next; 90m-step is not needed since the
# shape was chosen at 60m.
TRIALS = [
    ("45m-step", "45m", "step"),
    ("45m-linear", "45m", "linear"),
    ("60m-step", "60m", "step"),
    ("60m-linear", "60m", "linear"),
    ("90m-step", "90m", "step"),
    ("90m-linear", "90m", "linear"),
    ("120m-linear", "120m", "linear"),
    ("180m-linear", "180m", "linear"),
]
NETS = ("plain20", "plain56", "resnet20", "resnet56")
TRIAL_FILE = "trial.json"  # this script's own record: the command, wall seconds over every invocation, the CPU


def command(budget: str, schedule: str, out: Path, data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "reslab", "study", "degradation", "--profile", "hour", "--budget", budget,
           "--set", f"optim.schedule={schedule}", "--set", "data.test_subset=0", "--no-report", "--quiet",
           "--out", str(out)]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def finished(out: Path) -> bool:
    runs = [out / "runs" / f"{net}-s0" / "summary.json" for net in NETS]
    return all(p.is_file() and json.loads(p.read_text()).get("status") == "finished" for p in runs)


def run_trial(name: str, budget: str, schedule: str, root: Path, data_dir: str | None) -> int:
    out = root / name
    record = out / TRIAL_FILE
    if finished(out):
        print(f"[trials] {name}: finished, skipped")
        return 0
    cmd = command(budget, schedule, out, data_dir)
    print(f"[trials] {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO).returncode
    seconds = time.perf_counter() - start
    if out.is_dir():  # the study writes nothing before its input is known good
        old = json.loads(record.read_text()) if record.is_file() else {"wall_seconds": 0.0, "invocations": 0}
        atomic_json(record, {"budget": budget, "schedule": schedule, "command": cmd[1:],
                             "wall_seconds": old["wall_seconds"] + seconds, "invocations": old["invocations"] + 1,
                             "cpu": cpu_name(), "cpu_count": os.cpu_count()})
    return rc


def atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def final_val_error(run_dir: Path) -> float | None:
    """The validation error at the end of training (metrics.csv's last row); None if the run has not finished."""
    f = run_dir / "metrics.csv"
    if not f.is_file():
        return None
    with open(f) as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[-1]["val_error"]) if rows and rows[-1].get("val_error") else None


def table_row(name: str, budget: str, schedule: str, root: Path) -> str:
    """One row of docs/hour-study.md's table: budget | schedule | iterations | val errors | wall time | CPU."""
    out = root / name
    study = out / "study.json"
    if not study.is_file() or not finished(out):
        return f"| {budget} | {schedule} | pending | pending | pending | pending |"
    spec = json.loads(study.read_text())
    if spec["base_config"]["data"]["test_subset"] != 0:
        raise SystemExit(f"{out} evaluated on test (data.test_subset is not 0): not a validation trial")
    rec = json.loads((out / TRIAL_FILE).read_text()) if (out / TRIAL_FILE).is_file() else {}
    errors = " / ".join(f"{net} {final_val_error(out / 'runs' / f'{net}-s0'):.2f}" for net in NETS)
    summary = json.loads((out / "runs" / f"{NETS[0]}-s0" / "summary.json").read_text())
    plan = spec.get("plan") or {}
    wall = f"{rec['wall_seconds'] / 60:.1f} min" if rec else "?"
    amp = plan.get("amp", spec["base_config"]["train"]["amp"])
    cpu = f"{rec.get('cpu') or plan.get('machine', '?')} ({rec.get('cpu_count', '?')} cores), " \
          f"{'fp32' if amp == 'none' else amp}"
    return f"| {budget} | {schedule} | {summary['iterations']:,} | {errors} | {wall} | {cpu} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="directory of the trials' studies, outside the repository")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 directory (default: reslab's own lookup)")
    p.add_argument("--only", default=None, help="comma-separated trial names (default: every trial, in order)")
    p.add_argument("--table", action="store_true", help="print the table's rows only; run nothing")
    p.add_argument("--dry-run", action="store_true", help="print each trial's command; run nothing")
    a = p.parse_args()
    root = Path(a.root).expanduser().resolve()
    if root == REPO or REPO in root.parents:
        print(f"hour_trials: --root {root} is inside the repository; give a directory outside it", file=sys.stderr)
        return 2
    names = [t[0] for t in TRIALS]
    only = [n.strip() for n in a.only.split(",")] if a.only else names
    unknown = [n for n in only if n not in names]
    if unknown:
        print(f"hour_trials: --only {','.join(unknown)}: unknown trial; allowed: {', '.join(names)}", file=sys.stderr)
        return 2
    trials = [t for t in TRIALS if t[0] in only]
    if a.dry_run:
        for name, budget, schedule in trials:
            print(" ".join(command(budget, schedule, root / name, a.data_dir)))
        return 0
    if not a.table:
        root.mkdir(parents=True, exist_ok=True)
        for name, budget, schedule in trials:
            rc = run_trial(name, budget, schedule, root, a.data_dir)
            if rc:
                print(f"[trials] {name} stopped with exit code {rc}; rerun this command to resume it", file=sys.stderr)
                return rc
    print("| budget | schedule | iterations | val errors per net (%) | wall time | CPU |")
    print("|---|---|---|---|---|---|")
    for name, budget, schedule in trials:
        print(table_row(name, budget, schedule, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
