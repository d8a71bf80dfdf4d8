"""Other projects' state dicts as reslab's."""
from __future__ import annotations

import torch

from reslab import ReslabError
from reslab.weights.files import strip_prefix


def convert_akamaster(state: dict) -> tuple[str, dict]:
    """akamaster/pytorch_resnet_cifar10 state dict -> (reslab model name, reslab state dict).

      * every key carries a `module.` prefix (saved from DataParallel)  -> stripped
      * the classifier is called `linear`                              -> renamed `fc`
      * BatchNorm has no `num_batches_tracked` counters                -> added (zero; they do not affect eval)
      * option-A shortcuts are parameter-free lambdas                  -> nothing to map; PadShortcut matches them
    The depth is read from the number of blocks, so the right model is named without being told."""
    state = strip_prefix(state)
    out = {}
    for k, v in state.items():
        if k.startswith("linear."):
            k = "fc." + k[len("linear."):]
        out[k] = v
    blocks = {k.split(".")[1] for k in out if k.startswith("layer1.")}
    n = len(blocks)
    if n == 0 or "conv1.weight" not in out or "fc.weight" not in out:
        raise ReslabError("not an akamaster CIFAR ResNet state dict (expected conv1, layer1.*, linear keys)")
    for k in list(out):
        if k.endswith(".running_mean"):
            out[k[: -len("running_mean")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return f"resnet{6 * n + 2}", out


CONVERTERS = {"akamaster": convert_akamaster}
