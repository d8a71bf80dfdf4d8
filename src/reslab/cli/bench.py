"""`reslab bench train|eval`: reslab's step against the conventional PyTorch pipeline (see reslab.bench)."""
from __future__ import annotations

import argparse
import json

from reslab import ReslabError
from reslab.bench import bench_eval, bench_train, precision
from reslab.cli.common import HelpFormatter
from reslab.config import CHOICES
from reslab.models import create_model, model_exists

AMPS = CHOICES["train.amp"]


def configure(p) -> None:
    fmt = HelpFormatter
    bsub = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    for kind in ("train", "eval"):
        q = bsub.add_parser(kind, formatter_class=fmt, help=f"{kind} throughput")
        q.add_argument("--model", default="resnet20", help="any registered model")
        q.add_argument("--batch-size", type=int, default=128 if kind == "train" else 250, help="images per step")
        q.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
        q.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write every figure here")
        if kind == "train":
            q.add_argument("--rounds", type=int, default=6, help="interleaved A/B rounds")
            q.add_argument("--steps", type=int, default=8, help="steps per side per round")
            q.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
            q.add_argument("--amp", default="none", choices=AMPS, help="reslab's precision: none (fp32), bf16, "
                           "fp16 (GPU), or auto (bf16 where the device has it natively, as train.amp=auto); "
                           "not fp32: reslab in fp32 is measured in the same rounds too (default: none)")
            q.add_argument("--cuda-graph", default="off", choices=CHOICES["train.cuda_graph"],
                           help="reslab's step replayed as a CUDA graph (as train.cuda_graph): on, off, or auto (where "
                           "it can be: CUDA, fp32/bf16); graphed: reslab eager is measured in the same rounds too")
            q.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                           help="measure the conventional DataLoader pipeline too (--no-baseline: reslab only, e.g. "
                           "for several benchmarks sharing one GPU)")
        else:
            q.add_argument("--images", type=int, default=2000, help="images evaluated per measurement")
            q.add_argument("--train-images-per-s", type=float, default=None,
                           help="reslab's training throughput (from bench train) to report eval/train")


def run(a) -> int:
    if not model_exists(a.model):
        create_model(a.model)  # raises the registry's one-line error
    if a.batch_size <= 0:
        raise ReslabError(f"--batch-size {a.batch_size} must be > 0")
    if getattr(a, "amp", None) == "fp16" and a.device == "cpu":
        raise ReslabError("--amp fp16 needs a GPU; on CPU use bf16, auto or none")
    if a.bench_kind == "train":
        res = bench_train(a.model, a.batch_size, a.rounds, a.steps, device=a.device, workers=a.workers, amp=a.amp,
                          cuda_graph=a.cuda_graph, baseline=a.baseline)
        print(f"reslab   {res['reslab_images_per_s']:8.1f} img/s  ({res['gflops_reslab']} GFLOP/s)  "
              f"[{precision(res['amp'])}]")
        if res.get("amp_speedup"):
            print(f"reslab   {res['reslab_fp32_images_per_s']:8.1f} img/s  [fp32]: {res['amp']} is "
                  f"{res['amp_speedup']:.2f}x fp32" + (f"  ({res['amp_why']})" if res.get("amp_why") else ""))
        if res.get("fused_speedup"):
            print(f"reslab   {res['reslab_unfused_images_per_s']:8.1f} img/s  [PyTorch's BatchNorm and ReLU ops]: the "
                  f"fused BatchNorm+ReLU kernel is {res['fused_speedup']:.2f}x them")
        if res.get("graph_speedup"):
            print(f"reslab   {res['reslab_eager_images_per_s']:8.1f} img/s  [eager]: the CUDA graph is "
                  f"{res['graph_speedup']:.2f}x eager")
        if res.get("baseline"):
            print(f"baseline {res['baseline_images_per_s']:8.1f} img/s  ({res['gflops_baseline']} GFLOP/s)  "
                  f"[{res['baseline']}]")
        print((f"ratio    {res['ratio']:.2f}x   " if res.get("ratio") else "")
              + f"input pipeline {res['input_pipeline_ms']:.2f} ms/batch = "
              f"{100 * res['input_pipeline_share']:.1f}% of reslab's step   peak memory {res['peak_memory_mb']:.0f} MB")
        if res.get("ratio_ceiling_if_only_convs"):
            print(f"convolutions {res['conv_ms_per_step']:.0f} ms = {100 * res['conv_share']:.0f}% of reslab's step: "
                  f"with every other op free the ratio could reach at most {res['ratio_ceiling_if_only_convs']:.2f}x")
        if res.get("step_breakdown"):
            print("step     " + ", ".join(f"{part} {v['ms_per_step']:.0f} ms ({100 * v['share']:.0f}%)"
                                          for part, v in res["step_breakdown"].items()))
    else:
        res = bench_eval(a.model, a.batch_size, a.images, a.device, a.train_images_per_s)
        print(f"eval {res['plain_eval_images_per_s']:.0f} img/s, with conv-BN folding "
              f"{res['folded_bn_images_per_s']:.0f} img/s ({res['folding_speedup']:.2f}x)"
              + (f"; {res['eval_over_train']:.1f}x the training throughput" if res.get("eval_over_train") else ""))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=2)
    return 0
