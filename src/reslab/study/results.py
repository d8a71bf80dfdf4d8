"""Read a study directory into plain numbers: per run, and per model aggregated over seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from reslab import layout
from reslab.engine import runs as runfiles
from reslab.engine.correct import Correctness, read_correct
from reslab.engine.summary import RunSummary, read_summary
from reslab.study.spec import StudySpec, read_spec, run_status


@dataclass
class RunResult:
    name: str
    model: str
    group: str
    depth: int | None
    seed: int
    status: str                   # spec.run_status: missing (not started), running/interrupted, finished, failed
    summary: RunSummary
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
        """(mean, sample std or None, n) of the summary's `where` row's `key` over finished runs."""
        rows = [getattr(r.summary, where) for r in self.finished]
        vals = [row[key] for row in rows if row and row.get(key) is not None]
        return mean_std(vals)

    def summary_stat(self, key: str) -> tuple[float | None, float | None, int]:
        vals = [getattr(r.summary, key) for r in self.finished]
        return mean_std([v for v in vals if v is not None])


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
        d = layout.study_run_dir(path, r.name)
        summary = read_summary(d)
        rows = runfiles.read_metrics(d / layout.METRICS_FILE) if (d / layout.METRICS_FILE).exists() else []
        te = d / layout.TEST_EVAL_FILE
        env = d / layout.ENV_FILE
        dense = d / layout.TRAIN_LOG_FILE
        correct = d / layout.CORRECT_FILE
        results.append(RunResult(
            name=r.name, model=r.overrides["model.name"], group=r.group, depth=r.depth,
            seed=int(r.overrides.get("train.seed", 0)), status=run_status(d), summary=summary,
            rows=rows, test_eval=runfiles.read_json(te) if te.exists() else None,
            env=runfiles.read_json(env) if env.exists() else None,
            train_log=runfiles.read_metrics(dense) if dense.exists() else [],
            correct=read_correct(runfiles.read_json(correct), correct) if correct.exists() else {}))
    return Study(path, spec, results)
