"""Studies: grids of runs under one protocol, resumable; their reports are written by reslab.report.

A study kind is one module here exporting `KIND`, a `StudyKind` (reslab.study.kind: its name, its own
command-line arguments, its plan), registered once in KINDS below; its report sections and verdict questions
live in the module of the same name in reslab.report (registered in reslab.report.build.REPORTS).
"""
from reslab.study import degradation, imagenet_style
from reslab.study.degradation import plan_degradation
from reslab.study.imagenet_style import plan_imagenet_style
from reslab.study.kind import PlanRequest, StudyKind
from reslab.study.results import ModelResult, RunResult, Study, load_study
from reslab.study.runner import run_study
from reslab.study.spec import RunSpec, StudySpec, open_study

KINDS: dict[str, StudyKind] = {k.name: k for k in (degradation.KIND, imagenet_style.KIND)}

__all__ = ["KINDS", "ModelResult", "PlanRequest", "RunResult", "RunSpec", "Study", "StudyKind", "StudySpec",
           "load_study", "open_study", "plan_degradation", "plan_imagenet_style", "run_study"]
