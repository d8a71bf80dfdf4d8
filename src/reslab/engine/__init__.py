"""Training, evaluation, checkpoints and run directories.

Light to import: `from reslab.engine import runs` (reading a run's files) does not import the trainer, which is
looked up on first use of `train` (as are the other names of the API below):

    from reslab.engine import train, run_config, evaluate, prepare_data, resolve_device, EvalResult
    from reslab.engine import load_run_checkpoint
"""
import importlib

# `evaluate` is bound here, not looked up lazily: it is also the name of a submodule, which would shadow it.
from reslab.engine.evaluate import EvalResult as EvalResult, evaluate as evaluate  # re-exported (__all__)

_LAZY = {"train": "reslab.engine.trainer", "run_config": "reslab.engine.trainer",
         "prepare_data": "reslab.engine.prepare", "resolve_device": "reslab.engine.device",
         "load_run_checkpoint": "reslab.weights.files"}

__all__ = sorted([*_LAZY, "EvalResult", "evaluate"])


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reslab.engine' has no attribute {name!r}")
