"""Training, evaluation, checkpoints and run directories."""
from reslab.engine.evaluate import EvalResult, evaluate
from reslab.engine.trainer import load_run_checkpoint, prepare_data, resolve_device, train

__all__ = ["EvalResult", "evaluate", "load_run_checkpoint", "prepare_data", "resolve_device", "train"]
