"""Read a study directory into plain numbers: per run, and per model aggregated over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from reslab.engine import runs as runfiles
from reslab.engine.correct import CORRECT_FILE, Correctness, read_correct
from reslab.study.spec import StudySpec, read_spec


@dataclass
class RunResult:
    name: str
    model: str
    group: str
    depth: int | None
    seed: int
    status: str
    summary: dict
    rows: list[dict]
    test_eval: dict | None
    env: dict | None
    train_log: list[dict] = field(default_factory=list)  # the dense training curve (runs made before it: empty)
    # per-image correctness at the run's latest evaluation point, by split (correct.json; runs made before it: {})
    correct: dict[str, Correctness] = field(default_factory=dict)


@dataclass
class ModelResult:
    """One model over all its seeds."""

    model: str
    group: str
    depth: int | None
    runs: list[RunResult] = field(default_factory=list)

    @property
    def finished(self) -> list[RunResult]:
        return [r for r in self.runs if r.status == "finished"]

    def stat(self, key: str, where: str = "final") -> tuple[float | None, float | None, int]:
        """(mean, sample std or None, n) of summary[where][key] over finished runs."""
        vals = [r.summary[where][key] for r in self.finished
                if r.summary.get(where) and r.summary[where].get(key) is not None]
        return mean_std(vals)

    def summary_stat(self, key: str) -> tuple[float | None, float | None, int]:
        return mean_std([r.summary[key] for r in self.finished if r.summary.get(key) is not None])


def mean_std(vals: list[float]) -> tuple[float | None, float | None, int]:
    if not vals:
        return None, None, 0
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, len(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)), len(vals)


@dataclass
class Study:
    path: Path
    spec: StudySpec
    runs: list[RunResult]

    def models(self) -> list[ModelResult]:
        out: dict[str, ModelResult] = {}
        for r in self.runs:
            out.setdefault(r.model, ModelResult(r.model, r.group, r.depth)).runs.append(r)
        return list(out.values())

    def model(self, name: str) -> ModelResult | None:
        return next((m for m in self.models() if m.model == name), None)


def load_study(path: Path) -> Study:
    path = Path(path)
    spec = read_spec(path)
    results = []
    for r in spec.runs:
        d = path / "runs" / r.name
        summary = runfiles.read_json(d / runfiles.SUMMARY_FILE) if (d / runfiles.SUMMARY_FILE).exists() else {}
        rows = runfiles.read_metrics(d / runfiles.METRICS_FILE) if (d / runfiles.METRICS_FILE).exists() else []
        te = d / runfiles.TEST_EVAL_FILE
        env = d / runfiles.ENV_FILE
        dense = d / runfiles.TRAIN_LOG_FILE
        correct = d / CORRECT_FILE
        results.append(RunResult(
            name=r.name, model=r.overrides["model.name"], group=r.group, depth=r.depth,
            seed=int(r.overrides.get("train.seed", 0)), status=summary.get("status", "missing"), summary=summary,
            rows=rows, test_eval=runfiles.read_json(te) if te.exists() else None,
            env=runfiles.read_json(env) if env.exists() else None,
            train_log=runfiles.read_metrics(dense) if dense.exists() else [],
            correct=read_correct(runfiles.read_json(correct), correct) if correct.exists() else {}))
    return Study(path, spec, results)
