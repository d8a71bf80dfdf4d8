"""The GPU path. Two kinds of tests:

* CPU tests that fake a GPU's capabilities (monkeypatch): what train.amp=auto picks, the deterministic settings
  on CUDA, the refusals. They need no GPU and run everywhere.
* Tests marked `cuda`: they run on a real GPU (benchmarks/gpu_check.sh runs them and fails if any skipped) and
  skip with the reason elsewhere.
"""
import json
import os
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY_STUDY
from reslab import ReslabError
from reslab.data import Normalizer
from reslab.engine import device as devmod
from reslab.engine import trainer
from reslab.engine.graph import GraphStep, use_graph
from reslab.engine.step import train_step, training_batch
from reslab.models import create_model
from reslab.study import plan_degradation, run_study

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


def settings_at_probe(monkeypatch) -> dict:
    """The kernel settings in force when the run's throughput probe starts (filled in when it runs)."""
    seen, probe = {}, trainer.measure_speed

    def spy(cfg, dev):
        seen.update(devmod.kernel_settings())
        return probe(cfg, dev)

    monkeypatch.setattr(trainer, "measure_speed", spy)
    return seen


def test_run_is_deterministic_before_its_probe_and_records_its_kernels(tiny_cfg, tmp_path, monkeypatch,
                                                                       kernel_flags):
    torch.use_deterministic_algorithms(False)
    seen = settings_at_probe(monkeypatch)
    run = trainer.train(tiny_cfg(**{"train.iterations": 4, "train.eval_every": 4, "train.snapshots": [],
                                  "train.batch_size": 10, "train.eval_batch_size": 20, "data.test_subset": 20}),
                        runs_dir=tmp_path)
    assert seen["deterministic_algorithms"] and not seen["deterministic_warn_only"]
    env = json.loads((run / "env.json").read_text())
    assert env["kernels"]["deterministic_algorithms"] is True
    assert env["kernels"]["tf32_matmul"] is False and env["kernels"]["tf32_cudnn"] is False


# ---- the graphed step, exercised on the CPU (capture off) -------------------------------------------------------

LRS = [0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001]  # across two milestones, after the warm-up steps


def test_cuda_graph_on_is_refused_with_one_line_where_it_cannot_run():
    with pytest.raises(ReslabError, match=r"^train.cuda_graph=on: it needs a CUDA device, and this run trains on "
                                          r"cpu; use train.cuda_graph=auto or off$"):
        use_graph("on", torch.device("cpu"), "none")
    with pytest.raises(ReslabError, match="fp16's GradScaler syncs with the host"):
        use_graph("on", torch.device("cuda"), "fp16")
    with pytest.raises(ReslabError, match="torchrun"):
        use_graph("on", torch.device("cuda"), "none", distributed=True)
    assert not use_graph("auto", torch.device("cpu"), "none")
    assert not use_graph("auto", torch.device("cuda"), "fp16")
    assert use_graph("auto", torch.device("cuda"), "bf16")
    assert not use_graph("off", torch.device("cuda"), "none")


def test_train_refuses_cuda_graph_on_a_cpu(tiny_cfg, tmp_path):
    with pytest.raises(ReslabError, match="train.cuda_graph=on: it needs a CUDA device"):
        trainer.train(tiny_cfg(**{"train.cuda_graph": "on", "train.device": "cpu"}), runs_dir=tmp_path, quiet=True)
    assert not list(tmp_path.iterdir())  # refused before a run directory was made


def test_cuda_graph_key_reads_yamls_bare_on_and_off():
    from reslab.config import ConfigError, dump_yaml, load_config
    assert load_config(None, {"train.cuda_graph": True}).train.cuda_graph == "on"  # `--set train.cuda_graph=on`
    cfg = load_config(None, {"train.cuda_graph": False})
    assert cfg.train.cuda_graph == "off" and "cuda_graph: 'off'" in dump_yaml(cfg)
    with pytest.raises(ConfigError, match="train.cuda_graph='always' is not allowed; allowed: off, on, auto"):
        load_config(None, {"train.cuda_graph": "always"})
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(None, {"train.amp": True})  # only on/off keys read a YAML boolean as a choice


def batches(dev, n=len(LRS), batch=8, seed=0):
    """`n` augmented training batches built as the trainer builds them, on `dev`."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g).to(dev)
    labels = torch.randint(0, 10, (64,), generator=g).to(dev)
    norm = Normalizer("channel", torch.full((3,), 0.5), torch.full((3,), 0.25)).to(dev)
    for i in range(n):
        idx = torch.randperm(64, generator=g)[:batch].to(dev)
        yield training_batch(images, labels, idx, norm, augment_seed=i, channels_last=True)


def fresh(dev, name="resnet8", seed=0):
    torch.manual_seed(seed)
    model = create_model(name).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return model, opt


def state_of(model, opt):
    """Every number a step changes: weights, BN buffers (running stats, batches tracked), momentum buffers."""
    s = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    s.update({f"momentum.{i}": opt.state[p]["momentum_buffer"].clone() for i, p in enumerate(model.parameters())})
    return s


def test_graph_step_without_capture_follows_the_eager_step(kernel_flags):
    """On a CPU the graphed step's code runs eagerly (fused SGD, device lr): it trains as the trainer's step does,
    to rounding, across lr milestones; the optimizer's groups hold a float lr between steps (for checkpoints)."""
    dev = torch.device("cpu")
    m1, o1 = fresh(dev)
    m2, o2 = fresh(dev)
    g = GraphStep(m2, o2, dev, capture=False)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for lr, (x, y) in zip(LRS, batches(dev)):
        for group in o1.param_groups:
            group["lr"] = lr
        l1, out1 = train_step(m1, o1, scaler, x, y)
        l2, out2 = g.step(x, y, lr)
        torch.testing.assert_close(l2, l1, rtol=1e-5, atol=1e-6)
        assert all(type(group["lr"]) is float and group["lr"] == lr for group in o2.param_groups)
    a, b = state_of(m1, o1), state_of(m2, o2)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    assert g.graph is None and g.eager_steps == len(LRS)


def graph_mode_run(monkeypatch, tiny_cfg, tmp_path, name, **over):
    """A trainer run whose steps go through GraphStep (capture off on a CPU: the trainer's graph wiring, eagerly)."""
    monkeypatch.setattr(trainer, "use_graph", lambda *a, **k: True)
    cfg = tiny_cfg(**{"train.iterations": 6, "train.eval_every": 3, "train.snapshots": [], "train.batch_size": 10,
                      "data.test_subset": 20, **over})
    return trainer.train(cfg, runs_dir=tmp_path, run_name=name, quiet=True, **({"stop_after": 2} if "stop" in name
                                                                               else {}))


def test_trainer_in_graph_mode_resumes_exactly(monkeypatch, tiny_cfg, tmp_path, kernel_flags):
    whole = graph_mode_run(monkeypatch, tiny_cfg, tmp_path, "whole")
    part = graph_mode_run(monkeypatch, tiny_cfg, tmp_path, "stopped")
    trainer.train(resume=part, quiet=True)
    rows = [[r.split(",")[:9] for r in (d / "metrics.csv").read_text().splitlines()] for d in (whole, part)]
    assert len(rows[0]) == 3 and rows[0] == rows[1]  # header + 2 rows: losses and errors to the last digit
    w1 = torch.load(sorted((whole / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)["model_state"]
    w2 = torch.load(sorted((part / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)["model_state"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_bench_reslab_only_and_its_graphed_side_on_a_cpu():
    from reslab.bench import ReslabSide, bench_train
    res = bench_train("resnet8", batch_size=8, rounds=1, steps=1, warmup=0, workers=0, n_images=64,
                      cuda_graph="auto", baseline=False, log=lambda m: None)
    assert res["cuda_graph"] is False and "baseline_images_per_s" not in res and res["reslab_images_per_s"] > 0
    images, labels = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (32,))
    side = ReslabSide("resnet8", images, labels, 8, torch.device("cpu"), graph=True)
    side.steps(2)
    assert side.graph.eager_steps == 2  # a CPU never captures: the same step, eagerly
    with pytest.raises(ReslabError, match="train.cuda_graph=on: it needs a CUDA device"):
        bench_train("resnet8", batch_size=8, rounds=1, steps=1, n_images=64, cuda_graph="on", log=lambda m: None)



# ---- benchmarks/gpu_check.sh ------------------------------------------------------------------------------------

GPU_CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(CUDA, reason="this machine has a GPU: the check would run for real")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    r = subprocess.run(["bash", str(GPU_CHECK), str(tmp_path), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and "no CUDA GPU" in r.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_check_dry_run_runs_every_part_on_the_cpu(tmp_path):
    """The dry run: a few iterations of every part (tests, benches, the study) on synthetic data, packed."""
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(GPU_CHECK), "--dry-run", str(tmp_path), str(out)], capture_output=True,
                       text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tar = out / "gpu_check.tar.gz"
    assert 0 < tar.stat().st_size < 16 * 2**20
    with tarfile.open(tar) as t:
        names = [n.removeprefix("./") for n in t.getnames()]
        summary = t.extractfile("./summary.txt").read().decode()
    for name in ("env.txt", "cuda-tests.xml", "cuda-tests.log", "bench/resnet8-one.json",
                 "bench/resnet8-x2-graph-auto-1.json", "bench/resnet8-x2-graph-auto-2.json", "study.log"):
        assert name in names, name
    assert any(n.startswith("study/runs/") and n.endswith("metrics.csv") for n in names)
    assert not any(n.endswith(".pt") or "checkpoints/" in n for n in names)
    assert "all parts passed" in summary and "resnet8 one benchmark" in summary
    assert "cuda tests: " in r.stdout and " 0 failed" in r.stdout


# ---- on a real GPU (marked cuda: gpu_check.sh runs these and fails if any skipped) ------------------------------

def strict_cuda():
    devmod.set_determinism(True, torch.device("cuda"))
    devmod.set_tf32(False)


@cuda
@needs_cuda
def test_cuda_step_equals_the_cpu_step(kernel_flags):
    """The same batch (built on the CPU), the same initial weights: a CUDA step in fp32 with TF32 off lands
    where the CPU step lands, to fp32 rounding of a different summation order."""
    strict_cuda()
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    m_cpu, o_cpu = fresh(cpu)
    m_gpu, o_gpu = fresh(cpu)
    m_gpu.to(gpu)
    o_gpu = torch.optim.SGD(m_gpu.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for x, y in batches(cpu, n=3):
        l1, _ = train_step(m_cpu, o_cpu, torch.amp.GradScaler("cpu", enabled=False), x, y)
        l2, _ = train_step(m_gpu, o_gpu, torch.amp.GradScaler("cuda", enabled=False), x.to(gpu), y.to(gpu))
        torch.testing.assert_close(l2.cpu(), l1, rtol=1e-4, atol=1e-5)
    a = state_of(m_cpu, o_cpu)
    b = {k: v.cpu() for k, v in state_of(m_gpu, o_gpu).items()}
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


@cuda
@needs_cuda
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_graphed_step_equals_eager_bitwise_across_lr_milestones(kernel_flags, amp):
    """A captured step replays exactly what the same step computes eagerly: losses, weights, BN buffers (running
    statistics, batches tracked) and momentum buffers, bit for bit, across two lr milestones after the capture."""
    strict_cuda()
    dev = torch.device("cuda")
    m1, o1 = fresh(dev)
    m2, o2 = fresh(dev)
    eager, graphed = GraphStep(m1, o1, dev, amp, capture=False), GraphStep(m2, o2, dev, amp, capture=True)
    for lr, (x, y) in zip(LRS, batches(dev)):
        l1, out1 = eager.step(x, y, lr)
        l2, out2 = graphed.step(x, y, lr)
        assert torch.equal(l1, l2) and torch.equal(out1, out2)
    assert graphed.graph is not None and graphed.eager_steps < len(LRS) - 2  # milestones fell in replays
    a, b = state_of(m1, o1), state_of(m2, o2)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@cuda
@needs_cuda
@pytest.mark.parametrize("graph", ["off", "on"])
def test_resume_on_cuda_is_exact(tiny_cfg, tmp_path, kernel_flags, graph):
    over = {"train.device": "cuda", "train.cuda_graph": graph, "train.iterations": 12, "train.eval_every": 4,
            "train.snapshots": []}
    whole = trainer.train(tiny_cfg(**over), runs_dir=tmp_path, run_name="whole", quiet=True)
    part = trainer.train(tiny_cfg(**over), runs_dir=tmp_path, run_name="part", quiet=True, stop_after=6)
    trainer.train(resume=part, quiet=True)
    rows = [[r.split(",")[:9] for r in (d / "metrics.csv").read_text().splitlines()] for d in (whole, part)]
    assert len(rows[0]) == 4 and rows[0] == rows[1]
    w1, w2 = (torch.load(sorted((d / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=True)
              for d in (whole, part))
    assert all(torch.equal(w1["model_state"][k], w2["model_state"][k]) for k in w1["model_state"])
    assert w1["iteration"] == w2["iteration"] == 12
    assert json.loads((whole / "env.json").read_text())["kernels"]["cuda_graph"] is (graph == "on")


@cuda
@needs_cuda
def test_two_runs_share_one_gpu(fake_dir, tmp_path, kernel_flags):
    """A study's --devices cuda:0,cuda:0: two runs at a time on one GPU (two processes), the same numbers as the
    runs trained one after the other (deterministic kernels)."""
    over = TINY_STUDY + ["train.device=cuda"]
    together, alone = tmp_path / "together", tmp_path / "alone"
    for out, devices in ((together, ["cuda:0", "cuda:0"]), (alone, ["cuda:0"])):
        spec = plan_degradation("quick", (8,), seeds=1, overrides=over, data_dir=str(fake_dir))
        assert run_study(spec, out, devices=devices, quiet=True, log=lambda m: None)
    runs = sorted(p.name for p in (alone / "runs").iterdir())
    assert len(runs) == 2
    for name in runs:
        a, b = ((d / "runs" / name / "metrics.csv").read_text().splitlines() for d in (alone, together))
        assert [r.split(",")[:9] for r in a] == [r.split(",")[:9] for r in b], name


@cuda
@needs_cuda
def test_bf16_on_this_gpu(tiny_cfg, tmp_path, kernel_flags):
    """amp=auto picks bf16 exactly where this GPU computes it natively; a bf16 run trains (finite, learning)."""
    dev = torch.device("cuda")
    native = torch.cuda.get_device_capability(dev) >= (8, 0)
    assert (devmod.choose_amp("auto", dev)[0] == "bf16") is native
    assert native == torch.cuda.is_bf16_supported(including_emulation=False)
    run = trainer.train(tiny_cfg(**{"train.device": "cuda", "train.amp": "bf16", "train.iterations": 20}),
                        runs_dir=tmp_path, quiet=True)
    rows = [r.split(",") for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    losses = [float(r[2]) for r in rows]
    assert all(map(lambda v: v == v and v < 1e3, losses)) and losses[-1] < losses[0]


@cuda
@needs_cuda
def test_deterministic_mode_fails_on_a_nondeterministic_cuda_op(kernel_flags):
    strict_cuda()
    with pytest.raises(RuntimeError, match="deterministic"):
        torch.histc(torch.rand(100, device="cuda"), bins=10)


@cuda
@needs_cuda
def test_cublas_is_set_before_the_probe_on_cuda(tiny_cfg, tmp_path, monkeypatch, kernel_flags):
    seen = settings_at_probe(monkeypatch)
    trainer.train(tiny_cfg(**{"train.device": "cuda", "train.iterations": 4, "train.eval_every": 4,
                              "train.snapshots": []}), runs_dir=tmp_path)
    assert seen[devmod.CUBLAS_ENV] in devmod.DETERMINISTIC_CUBLAS
    assert seen["deterministic_algorithms"] and not seen["deterministic_warn_only"]
