"""The paper-protocol runs beside Table 6: docs/paper-protocol/ from finished `reslab train --config paper` runs.

    python benchmarks/paper_protocol_report.py /work/runs/paper-resnet20 [/work/runs/paper-plain20 ...] \
        --machine "AMD EPYC, Zen 5 (family 26 model 2), 2 cores, AVX512_BF16" --out docs/paper-protocol

For each run it copies the small files (config, logs, metrics, summary, test evaluation, environment; never
checkpoints) into OUT/<run name>/, then writes OUT/report.md and OUT/curves.png (Fig. 6's axes: training error
thin, test error bold). The number compared with the paper is the *final iteration's* test error on the full
10,000-image test set — the paper's protocol — never the best epoch picked on the test set; the epoch best on
validation is shown beside it for reference. A run that has not finished its schedule is refused.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from reslab import ReslabError
from reslab.models import model_info
from reslab.models.paper import TABLE6_PARAMS, TABLE6_TEST_ERROR
from reslab.plotting import line_style, model_color, plt, save_figure

SMALL_FILES = ("config.yaml", "train.log", "metrics.csv", "train_log.csv", "summary.json", "test_eval.json",
               "env.json")


def read_run(run_dir: Path) -> dict:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise ReslabError(f"{run_dir} is not a reslab run (no summary.json)")
    s = json.loads(summary_path.read_text())
    if s.get("status") != "finished":
        raise ReslabError(f"{run_dir} has not finished (status {s.get('status')!r}, iteration "
                          f"{s.get('iterations_done')} of {s.get('iterations')}): resume it first")
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    dense = list(csv.DictReader(open(run_dir / "train_log.csv")))
    env = json.loads((run_dir / "env.json").read_text())
    return {"dir": run_dir, "summary": s, "rows": rows, "dense": dense, "env": env,
            "info": model_info(s["model"])}


def table(runs: list[dict]) -> list[str]:
    out = ["| model | parameters (Table 6) | test error, paper | **test error, reslab (final iteration)** "
           "| test error at the best-validation epoch | validation error (final) | training time¹ | precision |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        s, info = r["summary"], r["info"]
        paper = TABLE6_TEST_ERROR.get(info.depth) if info.residual else None
        best = s.get("best") or {}
        amp = r["precision"]
        out.append(f"| {s['model']} | {s['parameters']:,} ({TABLE6_PARAMS.get(info.depth, '—')}) | "
                   f"{f'{paper:.2f}%' if paper else '— (Fig. 6 only)'} | **{s['final']['test_error']:.2f}%** | "
                   f"{best.get('test_error', float('nan')):.2f}% (iteration {best.get('iteration', '—'):,}) | "
                   f"{s['final'].get('val_error', float('nan')):.2f}% | {training_hours(r):.2f} h | {amp} |")
    return out + ["", "¹ Time in training steps, summed over the evaluation intervals of metrics.csv (evaluations, "
                  "checkpoints and any pause between a stop and its resume excluded)."]


def training_hours(r: dict) -> float:
    return sum(float(row["seconds"] or 0) for row in r["rows"]) / 3600


def curves(runs: list[dict], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    depths = [r["info"].depth for r in runs]
    for r in runs:
        group = "resnet" if r["info"].residual else "plain"
        color = model_color(group, r["info"].depth, depths)
        it = [int(p["iteration"]) / 1e4 for p in r["dense"]]
        ax.plot(it, [float(p["train_error"]) for p in r["dense"]], color=color, lw=0.6, ls=line_style(group),
                alpha=0.8)
        ax.plot([int(p["iteration"]) / 1e4 for p in r["rows"]], [float(p["test_error"]) for p in r["rows"]],
                color=color, lw=2, ls=line_style(group), label=f"{r['summary']['model']} test")
    ax.set(xlabel="iteration (1e4)", ylabel="error (%)", ylim=(0, 20),
           title="Paper protocol on CPU: training error (thin), test error (bold)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out / "curves.png")


def as_typed(command: str) -> str:
    """The command as a user types it: `reslab train ...`, not the interpreter's path to reslab's entry point."""
    head, _, rest = command.partition(" ")
    return f"reslab {rest}" if head.endswith(("reslab", "__main__.py")) else command


def report(runs: list[dict], machine: str) -> str:
    r0 = runs[0]
    lines = ["# The paper's CIFAR-10 protocol, run to the end by reslab on a CPU", "",
             f"Measured on **{machine}**, torch {r0['env']['torch']}; started at reslab commit "
             f"{r0['env'].get('git_commit', '?')[:7]} (env.json is written when a run starts). The protocol of Sec. "
             "4.2 exactly (configs/paper.yaml): 45k/5k split, batch 128, lr 0.1 divided by 10 at 32k and 48k "
             "iterations, 64k iterations, weight decay 1e-4, momentum 0.9, 4-pixel padding + random crop + flip, "
             "per-pixel mean subtraction, option-A shortcuts.", "",
             "The reslab number is the **final iteration's** error on the full 10,000-image test set (the paper's "
             "protocol); the epoch best on *validation* is shown for reference only. One seed each: the paper's "
             "own spread for ResNet-110 is ±0.16 points over 5 runs, so a single run is expected within a few "
             "tenths of a point of Table 6, not on it.", "", *table(runs), "", "![curves](curves.png)", "",
             "Each run's small files (config, logs, metrics, summary, test evaluation) are in the folder of its "
             "name; its final weights load by name: `create_model(NAME, pretrained=\"reslab\")`.", ""]
    for r in runs:
        s = r["summary"]
        resumed = (r["dir"] / "train.log").read_text().count("resuming ")
        lines.append(f"- `{r['dir'].name}`: {s['iterations']:,} iterations, {training_hours(r):.2f} h of training "
                     f"steps, {s['wall_seconds'] / 3600:.2f} h from start to end"
                     + (f" (stopped and resumed {resumed}x)" if resumed else "")
                     + f", {r['precision']}; command: `{as_typed(r['env'].get('command', '?'))}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--machine", required=True, help="the CPU the runs trained on, in words (lscpu)")
    ap.add_argument("--out", type=Path, default=Path("docs/paper-protocol"))
    args = ap.parse_args(argv)
    runs = [read_run(r) for r in args.runs]  # every run checked before anything is written
    for r in runs:
        amp = r["summary"].get("amp") or ("bf16" if "bf16 autocast" in (r["dir"] / "train.log").read_text()
                                          else "fp32")
        r["precision"] = amp
    args.out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        dest = args.out / r["dir"].name
        dest.mkdir(exist_ok=True)
        for name in SMALL_FILES:
            if (r["dir"] / name).is_file():
                shutil.copy2(r["dir"] / name, dest / name)
    curves(runs, args.out)
    (args.out / "report.md").write_text(report(runs, args.machine))
    print(f"wrote {args.out / 'report.md'} and {args.out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ReslabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
