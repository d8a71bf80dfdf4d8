"""Which device a run trains on, and waiting for it (the one place that knows cuda / mps / cpu)."""
from __future__ import annotations

import torch

from reslab import ReslabError


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N | mps -> a torch.device that exists here, or a one-line ReslabError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReslabError(f"--device {name}: CUDA is not available on this machine (torch "
                              f"{torch.__version__}); use --device cpu or auto")
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise ReslabError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ReslabError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def torch_sync(dev: torch.device) -> None:
    """Wait for the device's queued work (timings are taken on the host)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()
