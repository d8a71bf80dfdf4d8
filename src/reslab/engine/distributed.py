"""Several processes, one model: torchrun + DistributedDataParallel (gloo on CPU, NCCL on CUDA).

`train()` calls `setup()`; outside torchrun (no WORLD_SIZE > 1 in the environment) it returns a context with
`enabled == False` and every helper here is a no-op, so single-process training is untouched.

Under torchrun each process holds the whole data set and trains on its slice of every *global* batch
(`train.batch_size` stays the global batch): the same permutation on every rank, the augmentation randomness
drawn for the whole global batch, and rows [rank * B/N, (rank + 1) * B/N) gathered locally — so N x B/N sees
exactly the images, crops and flips of 1 x B. Gradients are averaged by DDP; with `train.sync_bn` the BN
statistics are computed over the global batch too, and the run follows the single-process one up to float
rounding. Only rank 0 writes anything; everything it decides that the others need (the run directory, the
checkpoint to resume from, errors) is broadcast.

On CUDA, `--sync-bn` uses torch's own `nn.SyncBatchNorm`. torch's SyncBatchNorm refuses CPU tensors, so on CPU
(gloo) `CPUSyncBatchNorm` below does the same computation: each rank's per-channel count, mean and variance
all-gathered and combined in float64 in the forward pass, and the two gradient sums all-reduced in the backward
pass, as torch's implementation does; the weight/bias gradients stay local (DDP averages them).
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

import torch
import torch.distributed as dist
import torch.nn as nn

from reslab import ReslabError
from reslab.engine.device import resolve_device
from reslab.models.resnet import memory_format_of


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ReslabError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun") from None


def launched() -> bool:
    """True in a process started by torchrun with more than one process in the job."""
    return world_size_from_env() > 1


@dataclass
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None
    # gloo group: host-side flags, objects and barriers (never waits on a GPU stream)
    ctrl: dist.ProcessGroup | None = None
    bn_group: dist.ProcessGroup | None = None  # gloo group for CPUSyncBatchNorm's collectives
    owns: bool = False         # we initialised the process group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ---- devices ----------------------------------------------------------------------------------------
    def device(self, name: str) -> torch.device:
        """The device this process trains on. Under torchrun: cuda:LOCAL_RANK for auto/cuda/cuda:N, or cpu."""
        if not self.enabled:
            return resolve_device(name)
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "mps":
            raise ReslabError("train.device='mps' cannot be used under torchrun: DistributedDataParallel "
                              "supports cpu (gloo) and cuda (nccl)")
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ReslabError(f"train.device={name!r}: CUDA is not available on this machine; under torchrun "
                                  f"use --device cpu (gloo)")
            n = torch.cuda.device_count()
            if self.local_rank >= n:
                raise ReslabError(f"LOCAL_RANK={self.local_rank}: this node has only {n} CUDA device(s); start at "
                                  f"most {n} processes per node (--nproc_per_node)")
            dev = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(dev)
            return dev
        return torch.device("cpu")

    # ---- batches ----------------------------------------------------------------------------------------
    def shard(self, global_batch: int) -> tuple[int, int]:
        """Rows [start, stop) of every global batch that this process trains on."""
        if global_batch % self.world_size:
            fits = global_batch - global_batch % self.world_size or self.world_size
            raise ReslabError(f"train.batch_size={global_batch} is the global batch and must divide evenly over the "
                              f"{self.world_size} processes (e.g. {fits})")
        per = global_batch // self.world_size
        return self.rank * per, (self.rank + 1) * per

    # ---- collectives (all no-ops in a single process) ---------------------------------------------------
    def agree(self, *flags: bool) -> list[bool]:
        """Each flag is true on every rank if it is true on any rank (host-side, no GPU sync)."""
        if not self.enabled:
            return [bool(f) for f in flags]
        t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.ctrl)
        return [bool(v) for v in t.tolist()]

    def all_gather_object(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.ctrl)
        return out

    def on_main(self, fn):
        """Run `fn` on rank 0 only and hand its result to every rank; a ReslabError there is raised on every
        rank (so no rank waits forever for one that gave up). Also a barrier."""
        if not self.enabled:
            return fn()
        box: list[tuple[str, object] | None] = [None]
        err: Exception | None = None
        if self.main:
            try:
                box[0] = ("ok", fn())
            except ReslabError as e:
                err, box[0] = e, ("error", str(e))
            except Exception as e:
                err, box[0] = e, ("crash", f"rank 0 failed: {type(e).__name__}: {e}")
        dist.broadcast_object_list(box, src=0, group=self.ctrl)
        got = box[0]
        if got is None:  # rank 0 always fills the box before the broadcast
            raise RuntimeError("rank 0 broadcast no result")
        kind, value = got
        if err is not None:
            raise err
        if kind == "error":
            raise ReslabError(value)
        if kind == "crash":
            raise RuntimeError(value)
        return value

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a device tensor over all ranks, in place (NCCL for CUDA tensors, gloo for CPU ones)."""
        if self.enabled:
            dist.all_reduce(t)
        return t

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BN running statistics) everywhere: what the checkpoint holds is what every rank
        evaluates with, with or without sync BN."""
        if self.enabled:
            for b in model.buffers():
                dist.broadcast(b, src=0)

    # ---- the model --------------------------------------------------------------------------------------
    def wrap(self, model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
        """DistributedDataParallel around `model` (which keeps its own parameters: checkpoints store
        model.state_dict(), no `module.` prefix). Call convert_sync_bn first, before building the optimiser."""
        if not self.enabled:
            return model
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP

        # Per-process BN: rank 0's running statistics are copied to every rank before each forward (DDP's
        # default). Sync BN: the statistics are equal on every rank already, no copy needed.
        kw: _BufferSync = {}
        if sync_bn:
            newer = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters  # its newer name
            kw["forward_sync_buffers" if newer else "broadcast_buffers"] = False
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **kw)

    def convert_sync_bn(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.enabled:
            return model
        if device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return convert_cpu_sync_bn(model, self.bn_group)

    def close(self) -> None:
        if self.owns and dist.is_initialized():
            dist.destroy_process_group()
            self.owns = False


class _BufferSync(TypedDict, total=False):
    """DDP's switch for copying rank 0's buffers before each forward, under its older or its newer name."""

    broadcast_buffers: bool
    forward_sync_buffers: bool


def setup() -> DistContext:
    """Join the torchrun job described by WORLD_SIZE / RANK / LOCAL_RANK (MASTER_ADDR/PORT come with them);
    a plain DistContext outside torchrun. The default group is gloo, or cpu:gloo + cuda:nccl where CUDA exists
    (the device is only known once the config is, which on --resume only rank 0 reads)."""
    world = world_size_from_env()
    if world <= 1:
        return DistContext()
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ReslabError(f"WORLD_SIZE={world} but RANK is missing or not an integer; launch with torchrun "
                          f"(or reslab train --nproc N)") from None
    owns = False
    if dist.is_initialized():
        if dist.get_world_size() != world:
            raise ReslabError(f"a process group of {dist.get_world_size()} is already initialised, "
                              f"but WORLD_SIZE={world}")
        backend: str = dist.get_backend()
    else:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        owns = True
    ctrl = dist.new_group(backend="gloo")
    bn_group = dist.new_group(backend="gloo")
    return DistContext(world, rank, local_rank, backend, ctrl, bn_group, owns)


# ---- sync BN on CPU ------------------------------------------------------------------------------------------
class _SyncBN(torch.autograd.Function):
    """Batch norm over the global batch, the way torch's (CUDA-only) SyncBatchNorm does it: forward, each rank's
    per-channel (count, mean, variance) all-gathered and combined in float64; backward, sum(dy) and
    sum(dy * xhat) all-reduced. The heavy passes are ATen's fused CPU batch-norm kernels."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group, world_size):
        dims = [0] + list(range(2, x.dim()))
        var_l, mean_l = torch.var_mean(x, dims, correction=0)
        local = torch.cat([mean_l.double(), var_l.double(), x.new_full((1,), x.numel() // x.shape[1],
                                                                       dtype=torch.float64)])
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local, group=group)
        c = x.shape[1]
        allst = torch.stack(parts)                            # (world, 2C + 1), in rank order on every rank
        means, vars_, counts = allst[:, :c], allst[:, c:2 * c], allst[:, 2 * c:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (counts * (vars_ + (means - mean) ** 2)).sum(0) / n   # the parallel-variance formula
        mean_f, var_f = mean.to(x.dtype), var.to(x.dtype)
        invstd_f = (var + eps).rsqrt().to(x.dtype)
        y = torch.batch_norm(x, weight, bias, mean_f, var_f, False, 0.0, eps, False)  # normalise: one fused pass
        if running_mean is not None:
            unbiased = var * n / (n - 1).clamp(min=1)
            running_mean.mul_(1 - momentum).add_(mean_f.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        ctx.save_for_backward(x, weight, mean_f, invstd_f)
        ctx.group, ctx.n, ctx.eps = group, n, eps
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean_f, invstd_f = ctx.saved_tensors
        dy = dy.contiguous(memory_format=memory_format_of(x))
        # local sum(dy * xhat) and sum(dy), one fused pass; they are also the local weight/bias gradients
        # (DDP averages those, as for any parameter)
        _, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean_f, invstd_f, True, ctx.eps, [False, True, True])
        c = x.shape[1]
        both = torch.cat([grad_bias.double(), grad_weight.double()])
        dist.all_reduce(both, group=ctx.group)
        shape = [1, c] + [1] * (x.dim() - 2)
        mean_dy = (both[:c] / ctx.n).to(x.dtype)
        mean_dy_xhat = (both[c:] / ctx.n).to(x.dtype)
        # dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * w, with xhat = (x - mean) * invstd
        k = invstd_f * mean_dy_xhat
        dx = dy - x * k.view(shape)
        dx.add_((mean_f * k - mean_dy).view(shape)).mul_((invstd_f * weight).view(shape))
        return dx, grad_weight, grad_bias, None, None, None, None, None, None


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every process of the job (gloo, CPU). Same parameters and
    buffers as BatchNorm2d, so its state dict loads into a plain model; evaluation uses the running statistics
    and needs no communication."""

    group = None

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.group) > 1):
            return super().forward(x)
        self._check_input_dim(x)
        if self.num_batches_tracked is None:  # convert_cpu_sync_bn converts tracking batch norms only
            raise ValueError("CPUSyncBatchNorm needs track_running_stats=True")
        if self.momentum is None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            self.num_batches_tracked.add_(1)
            factor = self.momentum
        with torch.autocast("cpu", enabled=False):  # statistics in fp32 under bf16 autocast, as ATen's BN does
            return _SyncBN.apply(x.float(), self.weight, self.bias, self.running_mean, self.running_var, self.eps,
                                 factor, self.group, dist.get_world_size(self.group))


def convert_cpu_sync_bn(module: nn.Module, group) -> nn.Module:
    """Replace every affine, tracking BatchNorm2d by a CPUSyncBatchNorm sharing its parameters and buffers."""
    out = module
    if type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats:
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        with torch.no_grad():
            out.weight = module.weight
            out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        out.group = group
    for name, child in module.named_children():
        out.add_module(name, convert_cpu_sync_bn(child, group))
    return out


# ---- `reslab train --nproc N` ------------------------------------------------------------------------------
def launch(nproc: int, train_args: list[str]) -> int:
    """Run `python -m torch.distributed.run --nproc_per_node=N -m reslab train ARGS` and return its exit code.
    On CPU, each worker gets cores // N threads unless OMP_NUM_THREADS is set (torchrun would give it 1)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "reslab", "train", *train_args]
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    print("launching: " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, env=env)
    # Ctrl-C reaches torchrun and its workers from the terminal; we wait for them to checkpoint and exit.
    # SIGTERM sent to this process is passed on to torchrun, which passes it on to the workers.
    old_int = signal.signal(signal.SIGINT, lambda s, f: None)
    old_term = signal.signal(signal.SIGTERM, lambda s, f: proc.send_signal(signal.SIGTERM))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
