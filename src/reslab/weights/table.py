"""Published weights reslab can load by name: where each file lives, its full sha256, and what it was trained with.

Two sources: "akamaster" (akamaster/pytorch_resnet_cifar10, downloaded once from a pinned commit) and "reslab"
(reslab's own paper-protocol runs, docs/paper-protocol/: files shipped inside the package, so they load offline;
plain nets too). Only entries whose test error reslab has measured on the official CIFAR-10 test set are listed
(tests/test_weights.py checks them against ../shared/ where the files are present).
"""
from __future__ import annotations

from dataclasses import dataclass

from reslab import ReslabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AKAMASTER_COMMIT = "d5489e8995e81e91ce6b1d69dcc98ad579b0b153"


@dataclass(frozen=True)
class Published:
    model: str            # the reslab model the weights load into
    source: str           # short name used in `pretrained="akamaster"`
    filename: str
    url: str              # "" for a file shipped inside the package (bundled)
    sha256: str           # of the whole file; checked at every load
    project: str
    licence: str
    test_error: float     # published CIFAR-10 test error (%), single 32x32 view
    normalization: dict | None  # Normalizer the weights were trained with (None: the reslab file carries its own)
    converter: str        # how the file's state dict becomes reslab's ("akamaster"; "reslab": it already is)
    pad_fill: str         # how their training augmentation padded: "black" (torchvision's RandomCrop) or "mean"
    kwargs: tuple = (("shortcut", "A"),)
    bundled: bool = False  # shipped in reslab/weights/published/ (never downloaded)
    note: str = ""         # how the weights were made, in a few words


def _akamaster(depth: int, sha256: str, test_error: float) -> Published:
    filename = f"resnet{depth}-{sha256[:8]}.th"
    return Published(
        model=f"resnet{depth}", source="akamaster", filename=filename,
        url=f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/{AKAMASTER_COMMIT}/pretrained_models/{filename}",
        sha256=sha256, project="akamaster/pytorch_resnet_cifar10", licence="BSD-2-Clause", test_error=test_error,
        normalization={"kind": "channel", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                       "note": "ImageNet mean/std, as these weights were trained by akamaster"},
        converter="akamaster", pad_fill="black")


def reslab_weights(model: str, sha256: str, test_error: float, note: str) -> Published:
    """A reslab paper-protocol run's final weights (iteration 64,000, not a best epoch), a slim reslab checkpoint
    written by benchmarks/publish_weights.py; its normalisation (per-pixel mean) travels inside the file."""
    return Published(
        model=model, source="reslab", filename=f"{model}-paper-{sha256[:8]}.pt", url="", sha256=sha256,
        project="reslab (docs/paper-protocol/)", licence="MIT", test_error=test_error, normalization=None,
        converter="reslab", pad_fill="mean", bundled=True, note=note)


PUBLISHED = {(p.model, p.source): p for p in (
    _akamaster(20, "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 8.27),
    _akamaster(32, "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 7.37),
    _akamaster(44, "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 6.90),
    _akamaster(56, "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", 6.61),
    reslab_weights("resnet20", "e828f529a9c30896b88ed7285e76afe56ef02e82e59f50e1ddec0fae62b64ce1", 8.50,
                   "configs/paper.yaml, one seed, bf16 autocast on two CPUs (docs/paper-protocol/); 8.50% is the "
                   "file's fp32 error on the 10k test set, 8.52% the run's own bf16 final evaluation"),
)}
DEFAULT_SOURCE = "akamaster"


def published(model: str, source: str | None = None) -> Published:
    """The table entry for `model` (from `source`; by default akamaster's where it has one, else the model's only
    source), or one line naming what exists."""
    have = [s for m, s in PUBLISHED if m == model]
    key = (model, source or (DEFAULT_SOURCE if DEFAULT_SOURCE in have or not have else have[0]))
    if key in PUBLISHED:
        return PUBLISHED[key]
    have = ", ".join(f"{m} ({s})" for m, s in PUBLISHED)
    raise ReslabError(f"no published weights for {model!r}" + (f" from {source!r}" if source else "")
                      + f"; published: {have}; or pass a checkpoint file, a run directory or an exported folder")


def sources() -> set[str]:
    return {s for _, s in PUBLISHED}


def by_filename(filename: str) -> Published | None:
    return next((p for p in PUBLISHED.values() if p.filename == filename), None)
