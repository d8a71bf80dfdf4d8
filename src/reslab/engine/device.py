"""Which device a run trains on, which precision it trains in there, and waiting for it (the one place that
knows cuda / mps / cpu)."""
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


def native_bf16(dev: torch.device) -> str | None:
    """Why `dev` computes bf16 natively (CUDA with bf16 support; a CPU with AVX512_BF16 or AMX), else None."""
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} supports bf16" if torch.cuda.is_bf16_supported() else None
    if dev.type != "cpu":
        return None
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    units = [name for key, name in (("avx512_bf16", "AVX512_BF16"), ("amx_bf16", "AMX-BF16")) if caps.get(key)]
    return f"this CPU ({caps.get('cpu_name') or 'unknown'}) has {' and '.join(units)}" if units else None


def choose_amp(amp: str, dev: torch.device) -> tuple[str, str | None]:
    """train.amp as the run uses it, and why when it was `auto`: bf16 autocast where `dev` has native bf16,
    fp32 ("none") elsewhere (emulated bf16 is slower than fp32: measured 24 vs ~200 img/s on a CPU without it)."""
    if amp != "auto":
        return amp, None
    why = native_bf16(dev)
    if why:
        return "bf16", f"train.amp=auto chose bf16 autocast: {why}"
    return "none", f"train.amp=auto chose fp32: {dev.type} has no native bf16 (AVX512_BF16, AMX or a bf16 GPU)"
