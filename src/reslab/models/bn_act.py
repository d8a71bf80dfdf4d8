"""BatchNorm2d + (residual add) + ReLU for training on the CPU, as one fused kernel where it applies.

The blocks call `bn_relu(bn, x, skip)` for "relu(bn(x) [+ skip])". In training, on channels_last float32 or
bfloat16 CPU tensors, it runs a small C++ kernel (csrc/bn_act.cpp) that reads each tensor fewer times than the
separate ATen ops and stays on their vectorised paths; everywhere else — eval mode, CUDA, NCHW tensors, a
module with hooks (Fig. 7's response hooks), a subclass such as the synchronised BatchNorm, torch.compile or
tracing — it runs exactly the PyTorch ops it replaces. The modules stay `nn.BatchNorm2d`: same parameters, same
buffers, same state-dict keys; the kernel computes the same mathematics (batch statistics with the biased
variance for normalising, the unbiased one with `momentum` for the running variance, `num_batches_tracked`
counted as nn.BatchNorm2d counts it), accumulating its sums in double.

The kernel is compiled on first use with torch.utils.cpp_extension (once per machine and instruction set; the
build is cached in torch's extension folder, TORCH_EXTENSIONS_DIR). Where it cannot be built — no compiler —
the PyTorch ops are used and `status()` says why. `RESLAB_FUSED_BN=0` in the environment, or
`set_enabled(False)`, turns it off.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils import cpp_extension

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

SOURCE = Path(__file__).parent / "csrc" / "bn_act.cpp"
DTYPES = (torch.float32, torch.bfloat16)
# Instruction-set flags per ATen CPU capability: the build is named after the capability, so a cache shared by
# machines of different CPUs never hands one a binary built for another's instructions.
ISA_FLAGS = {"avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c",
                        "-mprefer-vector-width=512"],
             "avx2": ["-mavx2", "-mfma", "-mf16c"]}

_state: dict = {"module": None, "error": None, "tried": False, "enabled": os.environ.get("RESLAB_FUSED_BN", "1")
                not in ("0", "off", "false", "no"), "calls": 0}
_lock = threading.Lock()


def capability() -> str:
    """The instruction set the kernel is built for: ATen's own choice (ATEN_CPU_CAPABILITY lowers it)."""
    cap = torch.backends.cpu.get_cpu_capability().lower()
    return "avx512" if cap.startswith("avx512") else "avx2" if cap.startswith("avx2") else "default"


def extension_name() -> str:
    return f"reslab_bn_act_{capability()}"


def build_root() -> Path:
    """torch's extension folder: TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions (torch itself reads the
    variable only inside `load`, so it is read here too)."""
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def build_dir() -> Path:
    """Where the kernel is built: torch's extension folder (TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions),
    in a folder named after the Python and torch versions — a binary built against one torch never loads into
    another — and the instruction set."""
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return build_root() / f"reslab-{py}-torch{torch.__version__}" / extension_name()


@contextlib.contextmanager
def build_lock(folder: Path):
    """Hold an OS lock on the build folder, and clear torch's own lock file if a builder left it behind.

    torch's builder serialises processes with a plain `lock` file, which a process killed mid-build (SIGTERM,
    SIGKILL, a session's end) never removes: every later process would wait on it forever. An fcntl lock dies
    with its holder, so while it is held no other reslab process is building here and a `lock` file is stale."""
    if fcntl is None:  # not POSIX: torch's lock file alone
        yield
        return
    with open(folder / "reslab.flock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_cached() -> bool:
    """Whether a build of the kernel is already there (torch still rebuilds it on load if the source changed)."""
    return (build_dir() / f"{extension_name()}.so").exists()


def build(verbose: bool = False, notify=None):
    """Compile (or load the cached build of) the kernel; returns the module, or None with `status()` saying why.
    `notify(line)` is told first when a compile (about a minute on 2 cores) is coming. Safe to call from several
    threads or processes: they take turns on a lock that a killed builder cannot leave behind."""
    with _lock:
        if _state["tried"]:
            return _state["module"]
        _state["tried"] = True
        if notify is not None and not is_cached():
            notify(f"building the fused BatchNorm+ReLU kernel for this CPU ({capability()}); once per machine, "
                   f"about a minute")
        try:
            cap = capability()
            folder = build_dir()
            folder.mkdir(parents=True, exist_ok=True)
            with build_lock(folder):
                _state["module"] = cpp_extension.load(name=extension_name(), sources=[str(SOURCE)],
                                                      verbose=verbose, build_directory=str(folder),
                                                      extra_cflags=["-O3", "-fopenmp", *ISA_FLAGS.get(cap, [])],
                                                      extra_ldflags=["-fopenmp"])
        except Exception as e:  # no compiler, a failed build, a broken cache: fall back, and say why
            _state["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        return _state["module"]


def status() -> str:
    """One line: whether the fused kernel is in use, and if not, why."""
    if not _state["enabled"]:
        return "off (RESLAB_FUSED_BN=0 or set_enabled(False)): PyTorch's BatchNorm2d and ReLU ops"
    if not _state["tried"]:
        return "not built yet (built on the first training step on a CPU)"
    if _state["module"] is None:
        return f"unavailable, using PyTorch's ops ({_state['error']})"
    return f"on (C++ kernel for {capability()})"


def active() -> bool:
    """Whether the fused path is switched on and its kernel is built (a CPU training step would take it)."""
    return bool(_state["enabled"] and _state["module"] is not None)


def set_enabled(on: bool) -> None:
    _state["enabled"] = bool(on)


@contextlib.contextmanager
def enabled(on: bool):
    """Temporarily turn the fused path on or off (benchmarks and tests compare the two in one process)."""
    before = _state["enabled"]
    _state["enabled"] = bool(on)
    try:
        yield
    finally:
        _state["enabled"] = before


def fused_calls() -> int:
    """How many times the fused kernel has run a forward in this process (tests prove the fast path ran)."""
    return _state["calls"]


def applies(bn: nn.Module, x: torch.Tensor, skip: torch.Tensor | None) -> bool:
    """Whether `bn_relu` may take the fused path for these arguments (it never changes what it computes)."""
    if not (_state["enabled"] and bn.training and type(bn) is nn.BatchNorm2d and bn.affine
            and bn.track_running_stats):
        return False
    if bn._forward_hooks or bn._forward_pre_hooks or nn.modules.module._global_forward_hooks:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if x.device.type != "cpu" or x.dim() != 4 or x.dtype not in DTYPES or x.numel() <= x.shape[1]:
        return False
    if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return False  # NCHW (or a 1x1 map, where both layouts coincide): the ATen ops are already fine there
    if any(t.dtype != torch.float32 or t.device.type != "cpu"
           for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)):
        return False
    if skip is not None and (skip.shape != x.shape or skip.dtype != x.dtype or skip.device != x.device):
        return False
    return build() is not None


def momentum_for(bn: nn.BatchNorm2d) -> float:
    """The running statistics' update factor for this step, after counting it, as nn.BatchNorm2d computes it."""
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:
        return 1.0 / float(bn.num_batches_tracked)
    return float(bn.momentum)


class FusedBatchNormReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, skip, running_mean, running_var, momentum, eps):
        kernel = _state["module"]
        if skip is not None:
            skip = skip.contiguous(memory_format=torch.channels_last)
        y, mean, invstd = kernel.forward(x, skip, weight, bias, running_mean, running_var, momentum, eps)
        ctx.save_for_backward(x, y, weight, mean, invstd)
        ctx.has_skip = skip is not None
        _state["calls"] += 1
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, y, weight, mean, invstd = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)
        want_dx = ctx.needs_input_grad[0]
        want_dskip = ctx.has_skip and ctx.needs_input_grad[3]
        dx, dw, db, dskip = _state["module"].backward(dy, x, y, weight, mean, invstd, want_dx, want_dskip)
        return (dx if want_dx else None, dw, db, dskip if want_dskip else None, None, None, None, None)


def bn_relu(bn: nn.BatchNorm2d, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """relu(bn(x) + skip), or relu(bn(x)) without a skip — fused in CPU training where `applies` says so."""
    if applies(bn, x, skip):
        momentum = momentum_for(bn)
        return FusedBatchNormReLU.apply(x, bn.weight, bn.bias, skip, bn.running_mean, bn.running_var, momentum, bn.eps)
    out = bn(x)
    if skip is not None:
        out = out + skip
    return F.relu(out, inplace=True)


def describe() -> str:
    """For `reslab bench` and a run's log: the fused path's status, and the instruction set it targets."""
    return f"fused BatchNorm+ReLU: {status()}"


if __name__ == "__main__":  # python -m reslab.models.bn_act builds the kernel and says how it went
    build(verbose="-v" in sys.argv)
    print(describe())
