"""`reslab bench train|eval`: reslab's real step against the conventional PyTorch pipeline, in one process.

Train: (a) reslab — data as uint8 on the device, one gather + normalise + pad/crop/flip per batch, channels_last,
the trainer's own `train_step`; (b) the conventional baseline — a map-style Dataset with per-sample random crop
(pad 4), horizontal flip, to-tensor and normalise (torchvision's own transforms on PIL images when torchvision
imports, otherwise the same per-sample ops on tensors), a DataLoader with 2 workers, NCHW fp32, eager model,
plain `torch.optim.SGD`. Both run the same model, batch size and numerics (fp32), interleaved A B A B ... so
machine drift cancels; the reported figure is the median over rounds.

Eval: reslab's evaluation (channels_last, inference_mode) with and without conv-BN folding, per image, against
reslab's training throughput.
"""
from __future__ import annotations

import json
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from reslab import ReslabError
from reslab.data import Normalizer
from reslab.engine.evaluate import evaluate
from reslab.engine.step import train_step, training_batch
from reslab.models import count_macs, create_model
from reslab.models.fuse import fold_batchnorm

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _images(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


class _PerSampleDataset(torch.utils.data.Dataset):
    """The conventional map-style dataset: one image at a time through per-sample transforms."""

    def __init__(self, images_hwc, labels):
        self.images, self.labels = images_hwc, labels
        try:
            import torchvision.transforms as T
            from PIL import Image
            self.kind = "torchvision transforms on PIL images"
            self._pil = Image.fromarray
            self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                 T.Normalize(MEAN, STD)])
        except Exception:  # torchvision not importable: the same ops per sample, on tensors
            self.kind = "per-sample tensor transforms (torchvision not importable)"
            self._pil = None
            self.tf = None
            self.mean = torch.tensor(MEAN).view(3, 1, 1)
            self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.tf is not None:
            return self.tf(self._pil(self.images[i])), int(self.labels[i])
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        x = F.pad(x, (4, 4, 4, 4))
        oy, ox = torch.randint(0, 9, (2,)).tolist()
        x = x[:, oy:oy + 32, ox:ox + 32]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x.float().div(255) - self.mean) / self.std, int(self.labels[i])


def conv_share(step_fn, steps: int = 2) -> float:
    """Share of a CPU training step spent inside convolution kernels (forward and backward), from the profiler's
    self times. It bounds what any change outside the convolutions can win: with everything else free, a step
    would still take `share` of its time."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step_fn(steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower())
    return conv / total if total else 0.0


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_train(model_name: str = "resnet20", batch_size: int = 128, rounds: int = 6, steps: int = 8,
                warmup: int = 3, device: str = "cpu", workers: int = 2, n_images: int = 10_000,
                log=print) -> dict:
    from reslab.engine.trainer import resolve_device
    dev = resolve_device(device)
    images, labels = _images(n_images)
    macs = count_macs(create_model(model_name))

    # (a) reslab
    torch.manual_seed(0)
    model_a = create_model(model_name).to(dev).to(memory_format=torch.channels_last)
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=False)
    dev_images, dev_labels = images.to(dev), labels.to(dev)
    norm = Normalizer("channel", torch.tensor(MEAN), torch.tensor(STD)).to(dev)
    perm = torch.randperm(n_images, device=dev)
    cursor = [0]

    def reslab_batch():
        k = cursor[0] % (n_images // batch_size)
        cursor[0] += 1
        return training_batch(dev_images, dev_labels, perm[k * batch_size:(k + 1) * batch_size], norm,
                              augment_seed=cursor[0], channels_last=True)

    def reslab_steps(n):
        for _ in range(n):
            x, y = reslab_batch()
            loss, _ = train_step(model_a, opt_a, scaler, x, y)
        float(loss)  # one host sync per round, as the trainer syncs rarely (loss is detached)

    # (b) conventional baseline
    torch.manual_seed(0)
    model_b = create_model(model_name).to(dev)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    ds = _PerSampleDataset(images.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0,
                                         pin_memory=dev.type == "cuda")
    it = [iter(loader)]

    def baseline_steps(n):
        for _ in range(n):
            try:
                x, y = next(it[0])
            except StopIteration:
                it[0] = iter(loader)
                x, y = next(it[0])
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            out = model_b(x)
            loss = F.cross_entropy(out, y)
            opt_b.zero_grad()
            loss.backward()
            opt_b.step()
        float(loss.detach())

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    log(f"bench train: {model_name}, batch {batch_size}, {rounds} rounds x {steps} steps each side, "
        f"interleaved; baseline = DataLoader({workers} workers) + {ds.kind}")
    reslab_steps(warmup)
    baseline_steps(warmup)
    ips_a, ips_b = [], []
    for r in range(rounds):
        for name, fn, store in (("reslab", reslab_steps, ips_a), ("baseline", baseline_steps, ips_b)):
            sync()
            t = time.perf_counter()
            fn(steps)
            sync()
            store.append(steps * batch_size / (time.perf_counter() - t))
        log(f"  round {r + 1}: reslab {ips_a[-1]:.0f} img/s, baseline {ips_b[-1]:.0f} img/s")

    # input pipeline share of reslab's step: time the batch preparation alone
    sync()
    t = time.perf_counter()
    for _ in range(20):
        x, y = reslab_batch()
    sync()
    pipe = (time.perf_counter() - t) / 20
    a, b = statistics.median(ips_a), statistics.median(ips_b)
    step_time = batch_size / a
    # Where the rest of the time goes: on CPU the convolutions (the same oneDNN kernels on both sides) set a
    # ceiling on any speed-up that does not make the convolutions themselves faster.
    ceiling = {}
    if dev.type == "cpu":
        share = conv_share(reslab_steps)
        ceiling = {"conv_share": round(share, 4), "conv_ms_per_step": round(share * step_time * 1e3, 1),
                   "ratio_ceiling_if_only_convs": round((batch_size / b) / (share * step_time), 3) if share else None}
    res = {
        "kind": "train", "model": model_name, "batch_size": batch_size, "device": str(dev),
        "baseline": f"DataLoader({workers} workers) + {ds.kind}, NCHW fp32, eager, torch.optim.SGD",
        "reslab_images_per_s": round(a, 1), "baseline_images_per_s": round(b, 1), "ratio": round(a / b, 3),
        "reslab_rounds": [round(v, 1) for v in ips_a], "baseline_rounds": [round(v, 1) for v in ips_b],
        "macs_per_image": macs, "gflops_reslab": round(a * macs * 2 * 3 / 1e9, 2),
        "gflops_baseline": round(b * macs * 2 * 3 / 1e9, 2),
        "input_pipeline_ms": round(pipe * 1e3, 3), "input_pipeline_share": round(pipe / step_time, 4),
        "peak_memory_mb": round(_peak_memory_mb(dev), 1), **ceiling, **machine(),
    }
    it.clear()  # drops the iterator: its persistent workers shut down
    return res


def bench_eval(model_name: str = "resnet20", batch_size: int = 250, n_images: int = 2000, device: str = "cpu",
               train_images_per_s: float | None = None, log=print) -> dict:
    from reslab.engine.trainer import resolve_device
    dev = resolve_device(device)
    images, labels = _images(n_images)
    images, labels = images.to(dev), labels.to(dev)
    norm = Normalizer("channel", torch.tensor(MEAN), torch.tensor(STD))
    model = create_model(model_name).to(dev).to(memory_format=torch.channels_last).eval()
    folded = fold_batchnorm(model)
    out = {}
    for name, m in (("plain_eval", model), ("folded_bn", folded)):
        evaluate(m, images[:batch_size], labels[:batch_size], norm, batch_size=batch_size, channels_last=True)
    times = {"plain_eval": [], "folded_bn": []}
    for _ in range(3):  # interleaved
        for name, m in (("plain_eval", model), ("folded_bn", folded)):
            t = time.perf_counter()
            evaluate(m, images, labels, norm, batch_size=batch_size, channels_last=True)
            times[name].append(n_images / (time.perf_counter() - t))
    for k, v in times.items():
        out[f"{k}_images_per_s"] = round(statistics.median(v), 1)
        log(f"  {k}: {out[f'{k}_images_per_s']:.0f} img/s")
    res = {"kind": "eval", "model": model_name, "batch_size": batch_size, "device": str(dev), **out,
           "folding_speedup": round(out["folded_bn_images_per_s"] / out["plain_eval_images_per_s"], 3), **machine()}
    if train_images_per_s:
        res["train_images_per_s"] = round(train_images_per_s, 1)
        res["eval_over_train"] = round(out["folded_bn_images_per_s"] / train_images_per_s, 2)
    return res


def machine() -> dict:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    flags = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": flags or platform.processor(),
            "python": platform.python_version()}


def register(sub) -> dict:
    import argparse
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("bench", help="benchmark reslab's training/eval step against the conventional pipeline",
                       formatter_class=fmt)
    bsub = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    for kind in ("train", "eval"):
        q = bsub.add_parser(kind, formatter_class=fmt, help=f"{kind} throughput")
        q.add_argument("--model", default="resnet20", help="any registered model")
        q.add_argument("--batch-size", type=int, default=128 if kind == "train" else 250)
        q.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
        q.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write every figure here")
        if kind == "train":
            q.add_argument("--rounds", type=int, default=6, help="interleaved A/B rounds")
            q.add_argument("--steps", type=int, default=8, help="steps per side per round")
            q.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
        else:
            q.add_argument("--images", type=int, default=2000, help="images evaluated per measurement")
            q.add_argument("--train-images-per-s", type=float, default=None,
                           help="reslab's training throughput (from bench train) to report eval/train")
    return {"bench": cmd_bench}


def cmd_bench(a) -> int:
    from reslab.models import model_exists
    if not model_exists(a.model):
        create_model(a.model)  # raises the registry's one-line error
    if a.batch_size <= 0:
        raise ReslabError(f"--batch-size {a.batch_size} must be > 0")
    if a.bench_kind == "train":
        res = bench_train(a.model, a.batch_size, a.rounds, a.steps, device=a.device, workers=a.workers)
        print(f"reslab   {res['reslab_images_per_s']:8.1f} img/s  ({res['gflops_reslab']} GFLOP/s)")
        print(f"baseline {res['baseline_images_per_s']:8.1f} img/s  ({res['gflops_baseline']} GFLOP/s)  [{res['baseline']}]")
        print(f"ratio    {res['ratio']:.2f}x   input pipeline {res['input_pipeline_ms']:.2f} ms/batch = "
              f"{100 * res['input_pipeline_share']:.1f}% of reslab's step   peak memory {res['peak_memory_mb']:.0f} MB")
        if res.get("ratio_ceiling_if_only_convs"):
            print(f"convolutions {res['conv_ms_per_step']:.0f} ms = {100 * res['conv_share']:.0f}% of reslab's step: "
                  f"with every other op free the ratio could reach at most {res['ratio_ceiling_if_only_convs']:.2f}x")
    else:
        res = bench_eval(a.model, a.batch_size, a.images, a.device, a.train_images_per_s)
        print(f"eval {res['plain_eval_images_per_s']:.0f} img/s, with conv-BN folding {res['folded_bn_images_per_s']:.0f} "
              f"img/s ({res['folding_speedup']:.2f}x)"
              + (f"; {res['eval_over_train']:.1f}x the training throughput" if res.get("eval_over_train") else ""))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=2)
    return 0
