"""Load torchvision ResNet weights (resnet18/34/50/101/152) into reslab's ImageNet-style nets.

torchvision's ResNet and reslab's `resnet{18,34,50,101,152}(stem="imagenet", shortcut="B", num_classes=1000)`
are the same network, layer for layer (7x7/2 stem + 3x3/2 max-pool, basic or bottleneck blocks with the stride
on the 3x3 conv — torchvision's "v1.5" —, projection shortcuts only where the shape changes, average pool,
linear classifier). Their state dicts differ in one name only:

    torchvision                          reslab
    layerS.B.downsample.0.weight    <->  layerS.B.shortcut.0.weight        (1x1 projection conv)
    layerS.B.downsample.1.{weight, bias, running_mean, running_var, num_batches_tracked}
                                    <->  layerS.B.shortcut.1.{...}         (its BatchNorm)
    everything else (conv1, bn1, layerS.B.conv1/bn1/conv2/bn2[/conv3/bn3], fc)  unchanged

Shapes are identical, so the mapping is a key rename and nothing else; a loaded model gives the same outputs as
the torchvision model on the same input (tests/test_imagenet_style.py checks it whenever torchvision is
importable, and checks the round trip of the mapping without it). `module.` / `_orig_mod.` prefixes
(DataParallel, torch.compile) are stripped first.

Note that torchvision's models use option-B shortcuts; reslab's ImageNet-style builders default to option A
(so plain and residual twins have equal parameters), which is why `load_torchvision` builds with shortcut="B".
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.weights.files import strip_prefix

TORCHVISION_NAME, RESLAB_NAME = "downsample", "shortcut"
_TV = re.compile(r"^(layer\d+\.\d+\.)downsample\.")
_RS = re.compile(r"^(layer\d+\.\d+\.)shortcut\.")

# (block kind, blocks per stage) -> depth, as in He et al. 2016, Table 1.
_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
           ("bottleneck", (3, 4, 23, 3)): 101, ("bottleneck", (3, 8, 36, 3)): 152}


def from_torchvision(state: dict) -> dict:
    """torchvision ResNet state dict -> reslab state dict (`downsample.N` -> `shortcut.N`)."""
    return {_TV.sub(r"\1shortcut.", k): v for k, v in strip_prefix(state).items()}


def to_torchvision(state: dict) -> dict:
    """reslab ImageNet-style ResNet state dict -> torchvision names (`shortcut.N` -> `downsample.N`)."""
    return {_RS.sub(r"\1downsample.", k): v for k, v in strip_prefix(state).items()}


def infer_architecture(state: dict) -> tuple[str, int]:
    """(reslab model name, num_classes) of a torchvision (or already renamed) ResNet state dict."""
    state = strip_prefix(state)
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ReslabError("not a torchvision ResNet state dict (expected conv1.weight, layer1..4.*, fc.weight)")
    if tuple(state["conv1.weight"].shape[-2:]) != (7, 7):
        raise ReslabError(f"conv1 is {tuple(state['conv1.weight'].shape[-2:])}, not torchvision's 7x7 stem")
    counts = []
    for s in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{s}.")}
        counts.append(len(blocks))
    kind = "bottleneck" if any(".conv3." in k for k in state) else "basic"
    depth = _DEPTHS.get((kind, tuple(counts)))
    if depth is None:
        raise ReslabError(f"{kind} blocks per stage {tuple(counts)} are not a ResNet-18/34/50/101/152; allowed: "
                          + ", ".join(f"{k} {c}" for k, c in _DEPTHS))
    return f"resnet{depth}", int(state["fc.weight"].shape[0])


def load_torchvision(source: dict | str | Path) -> torch.nn.Module:
    """Build the matching reslab model (stem="imagenet", shortcut="B") and load torchvision weights into it.

    `source` is a state dict or a file saved with `torch.save(model.state_dict(), path)` (read with
    weights_only=True). Loading is strict: a missing or unexpected key is an error.
    """
    from reslab.models import create_model

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ReslabError(f"{path} does not exist")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ReslabError(f"{path} cannot be read as a PyTorch state dict ({type(e).__name__})") from None
    if not isinstance(source, dict):
        raise ReslabError(f"expected a state dict, got {type(source).__name__}")
    name, num_classes = infer_architecture(source)
    model = create_model(name, stem="imagenet", shortcut="B", num_classes=num_classes)
    result = model.load_state_dict(from_torchvision(source), strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys + result.unexpected_keys)[:3]
        raise ReslabError(f"torchvision weights do not fit {name}: {len(result.missing_keys)} missing, "
                          f"{len(result.unexpected_keys)} unexpected keys (e.g. {', '.join(bad)})")
    return model
