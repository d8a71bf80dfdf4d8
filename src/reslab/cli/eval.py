"""`reslab eval`: test (or validation) error, per-class accuracy and the confusion matrix of a run, a checkpoint
or a published model (by name)."""
from __future__ import annotations

import json
from pathlib import Path

from reslab.cli.common import add_data_dir
from reslab.engine.eval_run import evaluate_checkpoint, format_eval, write_confusion_csv
from reslab.engine.progress import announce


def configure(p) -> None:
    p.add_argument("target", metavar="RUN_DIR|CKPT|NAME", help="a run directory, a checkpoint file, or a model "
                   "name with published weights (e.g. resnet56; NAME@SOURCE picks a source, e.g. resnet20@reslab)")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which split to evaluate")
    p.add_argument("--weights", default="last", choices=("last", "best"),
                   help="for a run directory: final weights, or best on validation")
    add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--no-csv", action="store_true", help="do not write the confusion-matrix CSV")


def confusion_csv_path(target: Path, split: str, weights: str) -> Path:
    """Beside a checkpoint file, in RUN_DIR/eval/ (created here) for a run, or NAME.confusion-SPLIT.csv in the
    current directory for a published model."""
    if target.is_dir():
        (target / "eval").mkdir(exist_ok=True)
        return target / "eval" / f"confusion-{split}-{weights}.csv"
    return target.with_name(f"{target.stem}.confusion-{split}.csv")


def run(a) -> int:
    result, ckpt, ckpt_path = evaluate_checkpoint(a.target, split=a.split, data_dir=a.data_dir, which=a.weights,
                                                  device=a.device, announce=announce)
    csv_path = None
    if not a.no_csv:
        csv_path = write_confusion_csv(confusion_csv_path(Path(a.target), a.split, a.weights), result)
    if a.json:
        d = result.as_dict()
        out = {"checkpoint": str(ckpt_path), "model": ckpt["model"]["name"], "split": a.split,
               f"{a.split}_error": round(d["error"], 4), "loss": d["loss"], "n": d["n"], "per_class": d["per_class"],
               "confusion": d["confusion"],
               "normalization": ckpt["normalization"]["note"] or ckpt["normalization"]["kind"],
               "iteration": ckpt.get("iteration"), "confusion_csv": str(csv_path) if csv_path else None}
        print(json.dumps(out))
    else:
        print(format_eval(result, ckpt, ckpt_path, a.split))
        if csv_path:
            print(f"\nconfusion matrix: {csv_path}")
    return 0
