"""Which device a run trains on, which precision it trains in there, and waiting for it (the one place that
knows cuda / mps / cpu), and the kernel settings a run trains under (determinism, cuDNN, TF32)."""
from __future__ import annotations

import os

import torch

from reslab import ReslabError
from reslab.models import bn_act


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
    """Why `dev` computes bf16 natively (a GPU of compute capability 8.0 or newer; a CPU with AVX512_BF16 or AMX),
    else None. On CUDA this asks `dev`'s own compute capability, not `torch.cuda.is_bf16_supported()`: that asks
    the *current* device and, by default, counts emulation, so it says yes on a pre-Ampere GPU (a T4), where bf16
    runs emulated and slower than fp32. Capability >= 8.0 is what `is_bf16_supported(including_emulation=False)`
    checks."""
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        if major < 8:
            return None
        return f"{torch.cuda.get_device_name(dev)} (compute capability {major}.{minor}) computes bf16 natively"
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


# The two cuBLAS workspace settings under which cuBLAS is deterministic (CUDA >= 10.2; see the "Reproducibility"
# notes of PyTorch). The first is the one a run sets; a user's own choice of the other is kept.
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def set_determinism(deterministic: bool, dev: torch.device) -> None:
    """The kernels a run trains with. Call it before the run's first cuBLAS call (the throughput probe and the
    first step come later): cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it creates its handle.

    deterministic=True: every op must have a deterministic kernel — on CPU and CUDA an op without one raises
    (no `warn_only`: a warning would let a nondeterministic kernel pass silently and the run would not be
    reproducible); on MPS, where few kernels say, it only warns. cuDNN picks its deterministic algorithms and does
    not benchmark. deterministic=False: no check, and on CUDA cuDNN benchmarks the convolutions of each new shape
    once and keeps the fastest (faster, not bitwise repeatable)."""
    if deterministic:
        if dev.type == "cuda":
            cublas = os.environ.get(CUBLAS_ENV)
            if cublas is None:
                os.environ[CUBLAS_ENV] = DETERMINISTIC_CUBLAS[0]
            elif cublas not in DETERMINISTIC_CUBLAS:
                raise ReslabError(f"{CUBLAS_ENV}={cublas} makes cuBLAS nondeterministic; with train.deterministic="
                                  f"true unset it or use {' or '.join(DETERMINISTIC_CUBLAS)} "
                                  f"(or set train.deterministic=false)")
        torch.use_deterministic_algorithms(True, warn_only=dev.type == "mps")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = dev.type == "cuda"


def set_tf32(allow: bool) -> None:
    """TF32 (a 10-bit mantissa inside fp32 matmuls and convolutions, on GPUs of compute capability >= 8.0) on or
    off, for cuBLAS and cuDNN alike. Off by default in a run (train.tf32=false): fp32 means fp32, as on the CPU;
    PyTorch's own defaults differ between the two (matmul off, cuDNN on)."""
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def kernel_settings() -> dict:
    """The settings a run's numbers depend on, as they are now (env.json records them at the start)."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            CUBLAS_ENV: os.environ.get(CUBLAS_ENV)}


def fused_batchnorm(dev: torch.device, channels_last: bool, compiled: bool, notify=None) -> str:
    """Whether a run's BatchNorm + ReLU (+ the residual add) take the fused CPU kernel (models/bn_act.py), as
    one line for the log and env.json; builds the kernel now if so, telling `notify` first when that compiles."""
    if dev.type != "cpu":
        return f"PyTorch's ops (the fused kernel is for the CPU; this run is on {dev.type})"
    if not channels_last:
        return "PyTorch's ops (the fused kernel is for channels_last; train.channels_last is false)"
    if compiled:
        return "PyTorch's ops, under torch.compile (train.compile)"
    bn_act.build(notify=notify)
    return bn_act.status()
