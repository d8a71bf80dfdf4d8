"""Studies: grids of runs under one protocol, resumable; their reports are written by reslab.report.

A study kind is one module here exporting KIND and its plan (`plan_degradation`, `plan_imagenet_style`); its
report sections and verdict questions live in the module of the same name in reslab.report.
"""
from reslab.study import degradation, imagenet_style
from reslab.study.degradation import plan_degradation
from reslab.study.imagenet_style import plan_imagenet_style
from reslab.study.results import ModelResult, RunResult, Study, load_study
from reslab.study.runner import run_study
from reslab.study.spec import RunSpec, StudySpec, open_study

KINDS = {m.KIND: m for m in (degradation, imagenet_style)}

__all__ = ["KINDS", "ModelResult", "RunResult", "RunSpec", "Study", "StudySpec", "load_study", "open_study",
           "plan_degradation", "plan_imagenet_style", "run_study"]
