"""The GPU path. Two kinds of tests:

* CPU tests that fake a GPU's capabilities (monkeypatch): what train.amp=auto picks, the deterministic settings
  on CUDA, the refusals. They need no GPU and run everywhere.
* Tests marked `cuda`: they run on a real GPU (benchmarks/gpu_check.sh runs them and fails if any skipped) and
  skip with the reason elsewhere.
"""
import json
import os
import warnings

import pytest
import torch

from reslab import ReslabError
from reslab.engine import device as devmod
from reslab.engine import trainer

CUDA = torch.cuda.is_available()
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not CUDA, reason=f"no CUDA device (torch {torch.__version__}, "
                                                 f"built with CUDA {torch.version.cuda})")


@pytest.fixture
def kernel_flags(monkeypatch):
    """Whatever a test sets globally (deterministic algorithms, cuDNN, TF32, CUBLAS_WORKSPACE_CONFIG) is put back."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    monkeypatch.delenv(devmod.CUBLAS_ENV, raising=False)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[2:]


def fake_gpu(monkeypatch, capability, name):
    """torch.cuda answers as a GPU of `capability` would; is_bf16_supported() says yes, as it does by default on
    any GPU that can emulate bf16 (a T4 included)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


# ---- CPU tests with faked capabilities --------------------------------------------------------------------------

@pytest.mark.parametrize("capability,name", [((8, 0), "NVIDIA A100"), ((9, 0), "NVIDIA H100"),
                                             ((8, 9), "NVIDIA L4")])
def test_auto_amp_picks_bf16_where_the_gpu_computes_it_natively(monkeypatch, capability, name):
    fake_gpu(monkeypatch, capability, name)
    amp, why = devmod.choose_amp("auto", torch.device("cuda"))
    assert amp == "bf16"
    assert name in why and f"{capability[0]}.{capability[1]}" in why


@pytest.mark.parametrize("capability,name", [((7, 5), "Tesla T4"), ((7, 0), "Tesla V100"), ((6, 1), "GTX 1080")])
def test_auto_amp_keeps_fp32_where_bf16_would_be_emulated(monkeypatch, capability, name):
    fake_gpu(monkeypatch, capability, name)
    assert torch.cuda.is_bf16_supported()  # the default question says yes: it counts emulation
    amp, why = devmod.choose_amp("auto", torch.device("cuda"))
    assert amp == "none"
    assert "no native bf16" in why


def test_auto_amp_asks_the_runs_own_gpu(monkeypatch):
    """A machine with an A100 as cuda:0 and a T4 as cuda:1: a run on cuda:1 trains in fp32."""
    caps = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: caps[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"gpu{torch.device(device).index}")
    assert devmod.choose_amp("auto", torch.device("cuda:0"))[0] == "bf16"
    assert devmod.choose_amp("auto", torch.device("cuda:1"))[0] == "none"


def test_deterministic_on_cuda_raises_instead_of_warning(kernel_flags):
    devmod.set_determinism(True, torch.device("cuda"))
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ[devmod.CUBLAS_ENV] == ":4096:8"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    # put_ without accumulate has no deterministic kernel on any device: under the run's settings it raises
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="deterministic"):
            torch.zeros(3).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))


def test_deterministic_keeps_a_deterministic_cublas_setting_and_refuses_another(kernel_flags, monkeypatch):
    monkeypatch.setenv(devmod.CUBLAS_ENV, ":16:8")
    devmod.set_determinism(True, torch.device("cuda"))
    assert os.environ[devmod.CUBLAS_ENV] == ":16:8"
    monkeypatch.setenv(devmod.CUBLAS_ENV, ":0:0")
    with pytest.raises(ReslabError, match=r"CUBLAS_WORKSPACE_CONFIG=:0:0 .*:4096:8 or :16:8"):
        devmod.set_determinism(True, torch.device("cuda"))


def test_nondeterministic_mode_lets_cudnn_benchmark(kernel_flags):
    devmod.set_determinism(True, torch.device("cuda"))
    devmod.set_determinism(False, torch.device("cuda"))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    devmod.set_determinism(False, torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark


def test_tf32_switch_covers_cublas_and_cudnn(kernel_flags):
    devmod.set_tf32(True)
    s = devmod.kernel_settings()
    assert s["tf32_matmul"] and s["tf32_cudnn"]
    devmod.set_tf32(False)
    s = devmod.kernel_settings()
    assert not s["tf32_matmul"] and not s["tf32_cudnn"]


def test_run_is_deterministic_before_its_probe_and_records_its_kernels(tiny_cfg, tmp_path, monkeypatch,
                                                                       kernel_flags):
    torch.use_deterministic_algorithms(False)
    seen = {}
    probe = trainer.measure_speed

    def spy(cfg, dev):
        seen.update(devmod.kernel_settings())
        return probe(cfg, dev)

    monkeypatch.setattr(trainer, "measure_speed", spy)
    run = trainer.train(tiny_cfg(**{"train.iterations": 4, "train.eval_every": 4, "train.snapshots": [],
                                  "optim.milestones_unit": "fraction"}),
                        runs_dir=tmp_path)
    assert seen["deterministic_algorithms"] and not seen["deterministic_warn_only"]
    env = json.loads((run / "env.json").read_text())
    assert env["kernels"]["deterministic_algorithms"] is True
    assert env["kernels"]["tf32_matmul"] is False and env["kernels"]["tf32_cudnn"] is False
