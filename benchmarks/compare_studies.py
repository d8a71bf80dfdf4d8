"""Is a change behaviour-neutral? Compare two runs of the same study (e.g. the quick degradation study before and
after a refactor, on one machine and torch build): every run's metrics.csv (timing columns dropped: seconds,
images_per_s, wall_seconds), train_log.csv byte for byte, test_eval.json, and a sha256 over the final weights
(every tensor of the newest checkpoint's model_state, in key order).

    python benchmarks/compare_studies.py studies/before studies/after     # prints IDENTICAL or DIFFERENT
"""
import csv
import hashlib
import json
import sys
from pathlib import Path

import torch

TIMING = {"seconds", "images_per_s", "wall_seconds"}


def metrics(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def weights_sha(run: Path) -> tuple[str, str]:
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["model_state"]
    h = hashlib.sha256()
    for k in state:
        h.update(k.encode())
        h.update(state[k].contiguous().numpy().tobytes())
    return ckpt.name, h.hexdigest()


def compare_run(run: Path, other: Path) -> bool:
    m = metrics(run / "metrics.csv") == metrics(other / "metrics.csv")
    t = (run / "train_log.csv").read_bytes() == (other / "train_log.csv").read_bytes()
    e = json.loads((run / "test_eval.json").read_text()) == json.loads((other / "test_eval.json").read_text())
    wa, wb = weights_sha(run), weights_sha(other)
    word = {True: "same", False: "DIFFER"}
    print(f"{run.name:14} metrics.csv {word[m]} | train_log.csv {word[t]} | test_eval.json {word[e]} | "
          f"{wa[0]} weights sha256 {wa[1]} {'==' if wa == wb else '!= ' + wb[1]}")
    return m and t and e and wa == wb


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    ok = all([compare_run(run, b / "runs" / run.name) for run in sorted((a / "runs").iterdir())])
    print("IDENTICAL" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
