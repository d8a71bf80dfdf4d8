"""The training step captured as one CUDA graph and replayed (train.cuda_graph: on | auto).

A ResNet-20 step at batch 128 is ~31 GFLOP: on a modern GPU it is bound by the ~600 kernel launches of the forward,
backward and optimizer, not by arithmetic. A CUDA graph launches them all at once. What a graph needs, and how this
step provides it:

* Static inputs. The graph reads its batch from two buffers that never move (`static_x`, `static_y`). The batch is
  gathered, normalised and augmented eagerly, exactly as in an eager run (`training_batch`, seeded by
  (seed, iteration) on the host), and copied into them. Host-side seeding is not replayed inside a graph, and this
  way exact resume does not depend on Philox offsets either.
* The learning rate as a device tensor (`lr`, float32, read by the fused SGD kernel through a pointer). A graph
  freezes the Python floats it was captured with; a device tensor whose value is written before each replay lets
  ONE graph serve the whole schedule — every milestone, a linear warm-up (a new lr at every step) and the
  ResNet-110 warm-up that ends when the training error says so — with no recapture and no graph per distinct lr
  (which would multiply the graph's memory and could not follow a linear warm-up at all). The value is only
  written when it changes.
* The fused SGD kernel (`torch.optim.SGD(fused=True)`: weight decay, momentum, Nesterov and the update in one
  kernel that takes a tensor lr). The foreach SGD an eager run uses turns a tensor lr into a Python float (a host
  sync) and cannot be captured. Fused and foreach SGD agree to rounding, not bitwise: a graphed run equals an
  eager run of this same step bitwise, and an eager run of the trainer's default step to rounding.
* Eager warm-up steps before capture (`WARMUP_STEPS`, on a side stream, as PyTorch's graph notes ask): they create
  the momentum buffers and let cuDNN and the allocator settle. They are real training steps of the run — the same
  ops as the graph, so bitwise the same as graphed ones — not throw-away steps, so nothing needs restoring.
* fp32 and bf16 only: fp16 needs a GradScaler, whose step syncs with the host. Autocast runs with its weight-cast
  cache off (a cache entry made during capture would live in the graph's pool).
* No host sync per step: the graph's loss and logits are static device tensors; the trainer accumulates the loss
  and the errors on the device and reads them at its log points, as in an eager run.

`GraphStep(capture=False)` runs the very same step eagerly, never capturing: on a CPU, for tests, and on CUDA as
the reference a graphed run is compared with.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from reslab import ReslabError

WARMUP_STEPS = 3  # eager steps before the capture (PyTorch's example uses 3; cuDNN picks its kernels in the first)
AMPS = ("none", "bf16")


def graph_refusal(dev: torch.device, amp: str, compile_: bool, distributed: bool) -> str | None:
    """Why the training step cannot be graphed here (a one-line reason), or None when it can."""
    if dev.type != "cuda":
        return f"it needs a CUDA device, and this run trains on {dev.type}"
    if amp not in AMPS:
        return f"it trains in fp32 or bf16 only (train.amp={amp}: fp16's GradScaler syncs with the host)"
    if compile_:
        return "train.compile=true already compiles the step; use one or the other"
    if distributed:
        return "it runs in one process only (this is a torchrun job)"
    return None


def use_graph(mode: str, dev: torch.device, amp: str, compile_: bool = False, distributed: bool = False) -> bool:
    """train.cuda_graph as the run uses it: off -> False; auto -> where it can be; on -> True, or a ReslabError
    naming why not."""
    if mode == "off":
        return False
    why = graph_refusal(dev, amp, compile_, distributed)
    if why is not None and mode == "on":
        raise ReslabError(f"train.cuda_graph=on: {why}; use train.cuda_graph=auto or off")
    return why is None


class GraphStep:
    """One training step (forward, loss, backward, fused SGD) into static buffers; graphed after WARMUP_STEPS."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.SGD, dev: torch.device, amp: str = "none",
                 capture: bool = True, warmup_steps: int = WARMUP_STEPS):
        if amp not in AMPS:
            raise ReslabError(f"a graphed step trains in fp32 or bf16, not train.amp={amp}")
        self.model, self.optimizer, self.amp, self.dev = model, optimizer, amp, dev
        self.capture = capture and dev.type == "cuda"
        self.warmup_steps = max(1, warmup_steps)  # the captured SGD must not be a first step (momentum buffers)
        # allocated like the first batch (its shape and memory format)
        self.static_x: torch.Tensor | None = None
        self.static_y: torch.Tensor | None = None
        self.lr = torch.zeros((), dtype=torch.float32, device=dev)
        self.lr_value: float | None = None
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_loss: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None
        self.side = torch.cuda.Stream(dev) if dev.type == "cuda" else None

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float):
        """One optimiser step on (x, y) at learning rate `lr`: (loss, logits), detached, on the device. After a
        capture they are the graph's static outputs, overwritten by the next step: read them before it."""
        if lr != self.lr_value:
            self.lr.fill_(lr)
            self.lr_value = lr
        if self.static_x is None or self.static_y is None:
            self.static_x, self.static_y = torch.empty_like(x), torch.empty_like(y)  # empty_like keeps the format
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        if self.graph is None and (not self.capture or self.eager_steps < self.warmup_steps):
            self.eager_steps += 1
            return self.eager()
        graph = self.graph if self.graph is not None else self.record()
        graph.replay()
        return self.static_loss, self.static_out

    def eager(self):
        """The step run eagerly (on a side stream on CUDA): the same ops the graph replays."""
        with self.side_stream():
            self.optimizer.zero_grad(set_to_none=True)
            return self.forward_backward_update()

    def record(self) -> torch.cuda.CUDAGraph:
        """Capture the step once (the graph is returned, and kept); from now on every step is a replay."""
        torch.cuda.synchronize(self.dev)
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the grads in its own pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss, self.static_out = self.forward_backward_update()
        return self.graph

    def forward_backward_update(self):
        x, y = self.static_x, self.static_y
        if x is None or y is None:
            raise RuntimeError("GraphStep: the static batch buffers are allocated by step(), before any forward")
        with self.tensor_lr():
            ctx = (torch.autocast(self.dev.type, dtype=torch.bfloat16, cache_enabled=False)
                   if self.amp == "bf16" else contextlib.nullcontext())
            with ctx:
                out = self.model(x)
                loss = F.cross_entropy(out.float(), y)
            loss.backward()
            self.optimizer.step()
        return loss.detach(), out.detach()

    @contextlib.contextmanager
    def tensor_lr(self):
        """The optimizer's groups take the device lr and the fused kernel for the step, and a float lr again after
        it (checkpoints hold a float, as an eager run's do; the graph keeps reading the tensor's memory)."""
        groups = self.optimizer.param_groups
        for g in groups:
            g.update(lr=self.lr, fused=True, foreach=False)
        try:
            yield
        finally:
            for g in groups:
                g["lr"] = self.lr_value

    @contextlib.contextmanager
    def side_stream(self):
        if self.side is None:
            yield
            return
        main = torch.cuda.current_stream(self.dev)
        self.side.wait_stream(main)  # the batch copied into the static buffers, and every earlier use of them
        with torch.cuda.stream(self.side):
            yield
        main.wait_stream(self.side)
