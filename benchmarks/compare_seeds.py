"""Two multi-seed studies of the same plan, side by side: does a change move the results by more than seeds do?

    RESLAB_FUSED_BN=0 reslab study degradation --profile quick --depths 20 --seeds 3 --out /tmp/seeds-before --no-report
    reslab study degradation --profile quick --depths 20 --seeds 3 --out /tmp/seeds-after --no-report
    python benchmarks/compare_seeds.py /tmp/seeds-before /tmp/seeds-after

For each model and metric (final test error, final training-probe error, final validation error): every seed's
value on both sides, each side's mean and seed-to-seed standard deviation, the difference of the means and the
largest per-seed |after - before|. A change "agrees within the seed spread" when the difference of the means is
smaller than the larger of the two standard deviations. Exit 1 if it is not, for any model and metric.
"""
from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from reslab import layout
from reslab.engine.runs import read_json

METRICS = (("test_error", "test"), ("train_probe_error", "train probe"), ("val_error", "val"))


def finals(study: Path) -> dict[str, dict[int, dict]]:
    """model -> seed -> the run's final row (summary.json), for every finished run of the study."""
    out: dict[str, dict[int, dict]] = {}
    for run in sorted(layout.study_runs_dir(study).iterdir()):
        summary = read_json(run / layout.SUMMARY_FILE)
        m = re.fullmatch(r"(.+)-s(\d+)", run.name)
        if summary.get("status") != "finished" or m is None:
            continue
        out.setdefault(m.group(1), {})[int(m.group(2))] = summary["final"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args(argv)
    a, b = finals(args.before), finals(args.after)
    ok = True
    print("| model | metric | before, per seed | after, per seed | before mean ± sd | after mean ± sd | "
          "difference of means | largest per-seed change | within the seed spread |")
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for model in sorted(set(a) & set(b)):
        seeds = sorted(set(a[model]) & set(b[model]))
        if len(seeds) < 2:
            continue
        for key, label in METRICS:
            x, y = [a[model][s][key] for s in seeds], [b[model][s][key] for s in seeds]
            sd = max(statistics.stdev(x), statistics.stdev(y))
            diff = statistics.mean(y) - statistics.mean(x)
            within = abs(diff) < sd
            ok &= within
            print(f"| {model} | {label} | {' / '.join(f'{v:.2f}' for v in x)} | {' / '.join(f'{v:.2f}' for v in y)} "
                  f"| {statistics.mean(x):.2f} ± {statistics.stdev(x):.2f} | {statistics.mean(y):.2f} ± "
                  f"{statistics.stdev(y):.2f} | {diff:+.2f} | {max(abs(p - q) for p, q in zip(x, y)):.2f} | "
                  f"{'yes' if within else '**no**'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
