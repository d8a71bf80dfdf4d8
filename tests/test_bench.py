import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from reslab.bench import (bench_eval, bench_train, conv_share, kineto_markers_dropped, speed_figures, step_breakdown,
                          step_part)
from conftest import REPO
from reslab import layout
from reslab.cli import main
from reslab.engine import train
from reslab.engine.runs import read_metrics
from reslab.layout import TRAIN_LOG_FILE
from reslab.models import create_model
from reslab.models.fuse import fold_batchnorm


def test_bench_train_reports_every_figure():
    res = bench_train("resnet8", batch_size=16, rounds=2, steps=2, warmup=1, workers=0, n_images=200,
                      log=lambda m: None)
    for key in ("reslab_images_per_s", "baseline_images_per_s", "ratio", "gflops_reslab", "input_pipeline_share",
                "peak_memory_mb", "baseline", "torch", "cpu"):
        assert key in res, key
    assert 0 < res["input_pipeline_share"] < 1
    assert len(res["reslab_rounds"]) == len(res["baseline_rounds"]) == 2
    # convolutions dominate even a tiny net's step, and the ceiling is consistent with the measured figures
    assert 0.2 < res["conv_share"] < 1
    assert res["ratio_ceiling_if_only_convs"] > res["ratio"]
    parts = res["step_breakdown"]
    assert list(parts) == ["convolution", "fused bn+add+relu", "batch-norm", "relu", "other"]
    assert sum(v["share"] for v in parts.values()) == pytest.approx(1, abs=1e-3)
    assert parts["convolution"]["share"] == res["conv_share"]
    # resnet8's BatchNorm and ReLU all run in the fused kernel here, which the bench also times switched off
    assert parts["fused bn+add+relu"]["share"] > 0 and parts["batch-norm"]["share"] == parts["relu"]["share"] == 0
    assert res["fused_batchnorm_relu"].startswith("on") and res["fused_speedup"] > 0
    assert len(res["reslab_unfused_rounds"]) == 2


def test_speed_figures_are_medians_of_the_rounds_and_their_ratio():
    # medians, not means: one slow round (a busy machine) moves neither side
    ips = {"reslab": [300.0, 100.0, 200.0], "baseline": [80.0, 400.0, 100.0], "reslab_fp32": [1.0, 1.0, 1.0]}
    assert speed_figures(ips) == {"reslab_images_per_s": 200.0, "baseline_images_per_s": 100.0, "ratio": 2.0}
    # convolutions take a quarter of reslab's step: with the rest free, reslab would be 4x faster, 8x the baseline
    assert speed_figures(ips, conv_share=0.25)["ratio_ceiling_if_only_convs"] == 8.0
    assert speed_figures(ips, conv_share=0.0)["ratio_ceiling_if_only_convs"] is None
    assert speed_figures({"reslab": [150.0], "baseline": [450.0]})["ratio"] == 0.333


def test_step_parts_name_the_ops_a_training_step_runs():
    assert step_part("aten::convolution_backward") == step_part("aten::mkldnn_convolution") == "convolution"
    assert step_part("aten::native_batch_norm_backward") == "batch-norm"
    assert step_part("aten::threshold_backward") == step_part("aten::clamp_min_") == "relu"
    assert step_part("aten::add_") == step_part("Optimizer.step#SGD.step") == "other"


def test_step_breakdown_finds_batch_norm_where_it_runs():
    bn, conv = torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1)
    x = torch.randn(8, 4, 16, 16)
    only_bn = step_breakdown(lambda n: [bn(x).sum().backward() for _ in range(n)])
    assert only_bn["batch-norm"] > 0.3 and only_bn["convolution"] == 0
    only_conv = step_breakdown(lambda n: [conv(x).sum().backward() for _ in range(n)])
    assert only_conv["convolution"] > 0.3 and only_conv["batch-norm"] == 0


def test_bench_eval_and_cli_json(tmp_path, capsys):
    res = bench_eval("resnet8", batch_size=50, n_images=100, train_images_per_s=100.0, log=lambda m: None)
    assert res["folded_bn_images_per_s"] > 0 and res["eval_over_train"] > 0
    out = tmp_path / "b.json"
    assert main(["bench", "eval", "--model", "resnet8", "--images", "100", "--batch-size", "50", "--json",
                 str(out)]) == 0
    assert json.loads(out.read_text())["kind"] == "eval"
    assert main(["bench", "train", "--model", "resnet21"]) == 2


def test_profiling_drops_only_kinetos_trace_markers(capfd):
    # torch.profiler's libkineto writes "USDT: ... profiler_start/stop" to fd 2; reslab bench must not show them
    conv = torch.nn.Conv2d(3, 4, 3)
    share = conv_share(lambda n: [conv(torch.randn(2, 3, 8, 8)).sum().backward() for _ in range(n)])
    assert 0 < share <= 1
    assert "USDT:" not in capfd.readouterr().err
    with kineto_markers_dropped():  # whatever else reaches fd 2 meanwhile is passed on
        os.write(2, b"USDT:2026-01-01 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"ERROR: a real problem\n")
        print("a Python warning", file=sys.stderr)
    assert sorted(capfd.readouterr().err.splitlines()) == ["ERROR: a real problem", "a Python warning"]


@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
def test_conv_bn_folding_keeps_outputs(shortcut):
    torch.manual_seed(0)
    m = create_model("resnet14", shortcut=shortcut)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    m.eval()
    f = fold_batchnorm(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in f.modules())
    x = torch.randn(8, 3, 32, 32)
    assert torch.allclose(m(x), f(x), atol=1e-4)
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # the original is untouched


def test_bf16_autocast_trains_like_fp32_on_cpu(tiny_cfg, tmp_path):
    # the same seed, data and schedule in fp32 and in bf16 autocast: the loss of every iteration agrees to
    # bf16's precision (a few parts in a thousand), without being the same numbers (the bf16 path did run),
    # and both fall over the ten steps
    losses = {}
    for amp in ("none", "bf16"):
        run = train(tiny_cfg(**{"train.amp": amp, "train.iterations": 10}), runs_dir=tmp_path / amp, quiet=True)
        losses[amp] = [r["train_loss"] for r in read_metrics(run / TRAIN_LOG_FILE)]
    fp32, bf16 = losses["none"], losses["bf16"]
    assert len(fp32) == len(bf16) == 10
    assert bf16 == pytest.approx(fp32, rel=0.02) and bf16 != fp32
    assert bf16[-1] < bf16[0] - 0.5 and fp32[-1] < fp32[0] - 0.5


def test_fp16_on_cpu_is_refused_with_a_clear_line(tiny_cfg):
    from reslab.config import ConfigError
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        tiny_cfg(**{"train.amp": "fp16", "train.device": "cpu"})


def test_compile_path_trains_on_cpu(tiny_cfg, tmp_path):
    pytest.importorskip("torch._inductor")
    run = train(tiny_cfg(**{"train.compile": True, "train.iterations": 4, "train.eval_every": 4}),
                runs_dir=tmp_path, quiet=True)
    ck = torch.load(next((run / "checkpoints").glob("ckpt-00000004.pt")), weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in ck["model_state"])  # plain keys, loadable anywhere


def _compare_seeds():
    spec = importlib.util.spec_from_file_location("compare_seeds", REPO / "benchmarks" / "compare_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seed_study(root: Path, errors: list[float]) -> Path:
    for seed, err in enumerate(errors):
        run = layout.study_run_dir(root, f"resnet8-s{seed}")
        run.mkdir(parents=True)
        final = {"test_error": err, "train_probe_error": err + 1, "val_error": err - 1}
        (run / layout.SUMMARY_FILE).write_text(json.dumps({"status": "finished", "final": final}))
    return root


def test_compare_seeds_says_whether_a_change_stays_within_the_seed_spread(tmp_path, capsys):
    cmp = _compare_seeds()
    before = _seed_study(tmp_path / "before", [50.0, 52.0, 54.0])        # sd 2
    assert cmp.main([str(before), str(_seed_study(tmp_path / "same", [51.0, 53.0, 53.5]))]) == 0
    assert "| resnet8 | test | 50.00 / 52.00 / 54.00 |" in capsys.readouterr().out
    assert cmp.main([str(before), str(_seed_study(tmp_path / "moved", [56.0, 58.0, 60.0]))]) == 1  # +6 > 2
    assert "**no**" in capsys.readouterr().out
