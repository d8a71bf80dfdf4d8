"""Studies: grids of runs under one protocol, resumable, with a report at the end."""
from reslab.study.runner import RunSpec, StudySpec, run_study
from reslab.study.degradation import plan_degradation

__all__ = ["RunSpec", "StudySpec", "run_study", "plan_degradation"]
