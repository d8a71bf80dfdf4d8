"""Import the pretrained CIFAR ResNets of akamaster/pytorch_resnet_cifar10 (the most used PyTorch reproduction).

Their files are `{"state_dict": ..., "best_prec1": ...}` saved from DataParallel, so:
  * every key carries a `module.` prefix                 -> stripped
  * the classifier is called `linear`                     -> renamed `fc`
  * BatchNorm has no `num_batches_tracked` counters       -> added (zero; they do not affect eval)
  * option-A shortcuts are parameter-free lambdas         -> nothing to map; our PadShortcut matches them
  * they were trained and evaluated on inputs normalised with ImageNet mean/std -> recorded in the
    checkpoint, so `reslab eval` uses exactly that and says so (never silently)
The depth is read from the number of blocks, so the right reslab model is built without being told.
"""
from __future__ import annotations

from pathlib import Path

import torch

from reslab import ReslabError
from reslab.data import Normalizer
from reslab.models import count_params, create_model
from reslab.weights.convert import convert_akamaster
from reslab.weights.files import save_checkpoint
from reslab.weights.table import IMAGENET_MEAN, IMAGENET_STD, by_filename

def import_akamaster(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise ReslabError(f"{src} does not exist")
    if out.exists() and not overwrite:
        raise ReslabError(f"{out} already exists; choose another --out (reslab never overwrites a checkpoint)")
    try:
        # weights_only: the file is read as data; it holds only tensors and a float.
        raw = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReslabError(f"{src} cannot be read as a PyTorch checkpoint ({type(e).__name__})") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ReslabError(f"{src} holds no state dict")
    name, converted = convert_akamaster(state)
    model = create_model(name, shortcut="A")
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ReslabError(f"{src}: keys do not match {name} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    norm = Normalizer("channel", torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD),
                      note="ImageNet mean/std, as these weights were trained by akamaster (recorded by import)")
    best = raw.get("best_prec1")
    ckpt = {"kind": "imported", "model": {"name": name, "kwargs": {"shortcut": "A"}},
            "model_state": model.state_dict(), "normalization": norm.state_dict(), "config": None,
            "source": {"project": "akamaster/pytorch_resnet_cifar10", "file": src.name,
                       "best_prec1": float(best) if best is not None else None}}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt, out)
    entry = by_filename(src.name)  # a file reslab knows: its documented error, which reslab's eval reproduces
    return {"model": name, "parameters": count_params(model), "out": str(out),
            "published_accuracy": ckpt["source"]["best_prec1"],
            "published_test_error": entry.test_error if entry and entry.model == name else None}
