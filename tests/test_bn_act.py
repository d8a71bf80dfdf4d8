"""The fused BatchNorm2d + (add) + ReLU kernel for CPU training (models/bn_act.py, issue 19).

Parity is judged against float64: the fused path's error must be no larger than nn.BatchNorm2d's own error
(with a little slack), on inputs whose mean and scale are far from 0 and 1, after several steps, for the
outputs, every gradient and the running statistics. Every parity test also proves the fast path ran.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reslab.analysis import layer_stds
from reslab.analysis.gradients import gradient_norms
from reslab.engine import train
from reslab.engine.distributed import CPUSyncBatchNorm
from reslab.models import bn_act, create_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler here: the fused kernel cannot be built (training falls back to PyTorch's ops)")
    if bn_act.build() is None:
        pytest.fail(f"the fused kernel did not build here: {bn_act.status()}")


def cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def inputs(dtype, shape=(6, 5, 7, 9), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = cl((torch.randn(shape, generator=g) * 3 + 5).to(dtype))     # offset and scaled: not N(0, 1)
    skip = cl(torch.randn(shape, generator=g).to(dtype))
    grad = cl(torch.randn(shape, generator=g).to(dtype))
    return x, skip, grad


def fresh_bn(channels: int, momentum=0.1) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def run_steps(bn, x, skip, grad, steps=3):
    """`steps` training forwards; the gradients of the last one. Returns every number the module produces."""
    bn = copy.deepcopy(bn)
    xs = x.clone().requires_grad_()
    ss = skip.clone().requires_grad_() if skip is not None else None
    for _ in range(steps):
        y = bn_act.bn_relu(bn, xs, ss)
    wrt = [xs, bn.weight, bn.bias] + ([ss] if ss is not None else [])
    grads = torch.autograd.grad(y, wrt, grad.to(y.dtype))
    out = {"y": y, "dx": grads[0], "dweight": grads[1], "dbias": grads[2],
           "running_mean": bn.running_mean, "running_var": bn.running_var}
    if ss is not None:
        out["dskip"] = grads[3]
    return out, bn


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-relative error: a ReLU kink flipped by rounding (inevitable at a few elements) does not dominate it."""
    a, ref = a.detach().double(), ref.detach().double()
    return float((a - ref).norm() / ref.norm().clamp_min(1e-30))


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("with_skip", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_path_is_at_least_as_close_to_float64_as_batchnorm(dtype, with_skip, momentum):
    x, skip, grad = inputs(dtype)
    skip = skip if with_skip else None
    bn = fresh_bn(x.shape[1], momentum)
    before = bn_act.fused_calls()
    with bn_act.enabled(True):
        fused, fused_bn = run_steps(bn, x, skip, grad)
    assert bn_act.fused_calls() == before + 3          # the fast path really ran, every step
    with bn_act.enabled(False):
        eager, eager_bn = run_steps(bn, x, skip, grad)
    assert bn_act.fused_calls() == before + 3
    with bn_act.enabled(False):
        ref, ref_bn = run_steps(bn.double(), x.double(), skip.double() if skip is not None else None,
                                grad.double())

    for key in ref:
        assert fused[key].dtype == eager[key].dtype and fused[key].shape == eager[key].shape, key
        e_fused, e_eager = rel_err(fused[key], ref[key]), rel_err(eager[key], ref[key])
        floor = 1e-6 if dtype == torch.float32 else 1e-3
        assert e_fused <= 1.5 * e_eager + floor, f"{key}: fused {e_fused:.3g} vs BatchNorm2d {e_eager:.3g}"
    for key in ("y", "dx") + (("dskip",) if with_skip else ()):
        assert fused[key].is_contiguous(memory_format=torch.channels_last), key
    assert int(fused_bn.num_batches_tracked) == int(eager_bn.num_batches_tracked) == 3

    # Eval mode afterwards: the running statistics the fused path kept normalise as BatchNorm2d's do.
    fused_bn.eval()
    eager_bn.eval()
    ref_bn.eval()
    with torch.no_grad():
        e_fused = rel_err(bn_act.bn_relu(fused_bn, x), F.relu(ref_bn(x.double())))
        e_eager = rel_err(bn_act.bn_relu(eager_bn, x), F.relu(ref_bn(x.double())))
    assert bn_act.fused_calls() == before + 3          # eval never takes the fused path
    assert e_fused <= 1.5 * e_eager + (1e-6 if dtype == torch.float32 else 1e-3)


def test_the_gradients_are_those_of_the_formula_in_float64_terms():
    """A direct check of the backward: the fused gradient of a small fp32 case against autograd in float64."""
    x, skip, grad = inputs(torch.float32, (4, 3, 3, 2), seed=3)
    bn = fresh_bn(3)
    fused, _ = run_steps(bn, x, skip, grad, steps=1)
    with bn_act.enabled(False):
        ref, _ = run_steps(bn.double(), x.double(), skip.double(), grad.double(), steps=1)
    for key in ("dx", "dweight", "dbias", "dskip"):
        torch.testing.assert_close(fused[key].double(), ref[key], rtol=1e-5, atol=1e-5)


def test_fused_results_do_not_depend_on_the_thread_count():
    x, skip, grad = inputs(torch.float32, (64, 16, 16, 16), seed=1)
    bn = fresh_bn(16)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, _ = run_steps(bn, x, skip, grad)
        torch.set_num_threads(max(2, threads))
        many, _ = run_steps(bn, x, skip, grad)
    finally:
        torch.set_num_threads(threads)
    for key in one:
        assert torch.equal(one[key], many[key]), key


def fallback_cases():
    x, skip, _ = inputs(torch.float32)
    hooked = fresh_bn(5)
    hooked.register_forward_hook(lambda m, i, o: None)
    no_affine = nn.BatchNorm2d(5, affine=False)
    no_stats = nn.BatchNorm2d(5, track_running_stats=False)
    sync = CPUSyncBatchNorm(5)
    return {"eval mode": (fresh_bn(5).eval(), x, skip), "NCHW input": (fresh_bn(5), x.contiguous(), skip),
            "a forward hook (Fig. 7's responses)": (hooked, x, skip), "affine=False": (no_affine, x, skip),
            "track_running_stats=False": (no_stats, x, skip), "the synchronised subclass": (sync, x, None),
            "float64": (fresh_bn(5).double(), x.double(), skip.double()),
            "a skip of another dtype": (fresh_bn(5), x, skip.double())}


@pytest.mark.parametrize("case", list(fallback_cases()))
def test_where_the_fused_path_does_not_apply_the_pytorch_ops_run_unchanged(case):
    bn, x, skip = fallback_cases()[case]
    twin = copy.deepcopy(bn)
    before = bn_act.fused_calls()
    if case == "the synchronised subclass":
        assert not bn_act.applies(bn, x, skip)  # its forward needs a process group; only the choice is checked
        return
    out = bn_act.bn_relu(bn, x, skip)
    expected = F.relu(twin(x) + (skip if skip is not None else 0))
    assert bn_act.fused_calls() == before
    assert torch.equal(out, expected)
    for name, buf in bn.named_buffers():
        assert torch.equal(buf, dict(twin.named_buffers())[name]), name


def test_switched_off_and_one_value_per_channel_behave_as_batchnorm():
    x, skip, _ = inputs(torch.float32)
    before = bn_act.fused_calls()
    with bn_act.enabled(False):
        bn_act.bn_relu(fresh_bn(5), x, skip)
    assert bn_act.fused_calls() == before
    one = cl(torch.randn(1, 5, 1, 1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn_act.bn_relu(fresh_bn(5), one)


def train_resnet8(steps: int, fused: bool, seed: int = 0, amp: str = "none"):
    torch.manual_seed(seed)
    model = create_model("resnet8").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    with bn_act.enabled(fused):
        for _ in range(steps):
            x = cl(torch.randn(8, 3, 16, 16, generator=g) * 2 + 1)
            y = torch.randint(0, 10, (8,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_a_network_trains_to_the_same_weights_fused_or_not_and_repeats_exactly():
    before = bn_act.fused_calls()
    fused = train_resnet8(4, fused=True)
    assert bn_act.fused_calls() - before == 4 * 7   # the stem and 6 blocks, every step
    again = train_resnet8(4, fused=True)
    eager = train_resnet8(4, fused=False)
    for (name, a), b, c in zip(fused.state_dict().items(), again.state_dict().values(),
                               eager.state_dict().values()):
        assert torch.equal(a, b), name                 # per-machine determinism
        if a.is_floating_point():
            torch.testing.assert_close(a, c, rtol=1e-3, atol=1e-4, msg=name)
        else:
            assert torch.equal(a, c), name             # num_batches_tracked
    assert list(fused.state_dict()) == list(eager.state_dict())


def test_fig7_responses_are_measured_the_same_with_the_fused_path_on():
    """`reslab analyze` measures responses in eval mode through hooks on the BatchNorm modules: the fused path
    must not change one of its numbers, on a model trained with it (non-trivial running statistics)."""
    model = train_resnet8(3, fused=True)
    batches = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with bn_act.enabled(True):
        on = layer_stds(model, [cl(b) for b in batches])
    with bn_act.enabled(False):
        off = layer_stds(model, [cl(b) for b in batches])
    assert on == off
    assert model.training                              # layer_stds put the mode back


def test_a_run_records_the_fused_path_and_uses_it(tiny_cfg, tmp_path, capsys):
    before = bn_act.fused_calls()
    run = train(tiny_cfg(), runs_dir=tmp_path, stop_after=3)
    assert bn_act.fused_calls() > before
    env = json.loads((run / "env.json").read_text())
    assert env["kernels"]["fused_batchnorm_relu"].startswith("on")
    assert "BatchNorm+ReLU on" in capsys.readouterr().out


def test_without_a_compiler_the_pytorch_ops_are_used_and_the_status_says_why(tmp_path):
    """A fresh extension folder and a compiler that fails: the kernel cannot be built, a training step still runs
    (on PyTorch's ops) and the status line says why."""
    script = ("import torch; from reslab.models import bn_act, create_model\n"
              "m = create_model('resnet8').to(memory_format=torch.channels_last).train()\n"
              "m(torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)).sum().backward()\n"
              "print(bn_act.fused_calls(), bn_act.status())\n")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "CXX": "/bin/false",
           "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("0 unavailable, using PyTorch's ops ("), out.stdout


def test_gradient_analysis_sees_the_gradients_training_computes_fused_or_not():
    """`reslab analyze gradients` takes one training-mode backward, as the optimiser does: with the kernel it
    measures the kernel's gradients, which agree with PyTorch's ops' to rounding."""
    x = cl(torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(5)))
    y = torch.arange(8) % 10
    norms = {}
    for fused in (True, False):
        model = create_model("resnet8").to(memory_format=torch.channels_last)
        torch.manual_seed(0)
        model.load_state_dict(create_model("resnet8").state_dict())
        before = bn_act.fused_calls()
        with bn_act.enabled(fused):
            norms[fused] = gradient_norms(model, x, y)
        assert (bn_act.fused_calls() > before) == fused
    names, grads, weights, loss = norms[True]
    assert names == norms[False][0] and weights == norms[False][2]
    torch.testing.assert_close(torch.tensor(grads), torch.tensor(norms[False][1]), rtol=1e-4, atol=1e-6)
    assert loss == pytest.approx(norms[False][3], rel=1e-5)


def test_a_lock_file_left_by_a_killed_build_does_not_hang_the_next_one():
    """torch's builder waits forever on the `lock` file of a builder that was killed (SIGTERM, SIGKILL); reslab
    clears it while holding an OS lock that dies with its holder, so the next process loads the kernel."""
    (bn_act.build_dir() / "lock").touch()
    script = "from reslab.models import bn_act; print(bn_act.build() is not None, bn_act.status())"
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True on (C++ kernel for"), out.stdout
    assert not (bn_act.build_dir() / "lock").exists()
