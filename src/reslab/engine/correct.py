"""Per-image correctness: which images of each evaluated split a run's model got right, as a run stores it.

A run writes correct.json (format "reslab-correct/1") at every evaluation point, overwritten by the latest:

    {"format": "reslab-correct/1", "iteration": N,
     "splits": {"test": {"n": 10000, "errors": 812, "indices_sha256": "...", "bits": "<base64>"},
                "val": {...}, "train_probe": {...}}}

`bits` packs one bit per image, in the split's order (bit i of byte i // 8, least significant first; 1 = right).
`indices_sha256` is the digest of the split's image indices (and of which CIFAR set they index): two vectors are
paired image by image only when their digests are equal (analysis.verdicts.discordant refuses the rest).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reslab import ReslabError, layout

CORRECT_FORMAT = "reslab-correct/1"
SPLITS = ("test", "val", "train_probe")  # what each split's vector is measured on: the test set, validation, and
# a fixed class-balanced subset of the training split in eval mode without augmentation (data.train_probe)


def split_digest(source: str, indices: torch.Tensor) -> str:
    """sha256 of a split: the set its indices point into (e.g. "cifar10/test") and the indices, in order."""
    h = hashlib.sha256(f"{source}:".encode())
    h.update(indices.to(torch.int64).cpu().contiguous().numpy().astype("<i8").tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Correctness:
    """One split's per-image correctness: `right` holds bit i set when image i was classified right."""

    split: str
    n: int
    digest: str
    right: int

    @property
    def errors(self) -> int:
        return self.n - self.right.bit_count()

    @classmethod
    def from_tensor(cls, split: str, digest: str, right: torch.Tensor) -> "Correctness":
        """From a bool vector (one entry per image of the split, in order)."""
        flags = right.to(torch.bool).cpu().numpy()
        packed = np.packbits(flags, bitorder="little").tobytes()
        return cls(split, int(flags.size), digest, int.from_bytes(packed, "little"))

    def as_dict(self) -> dict:
        raw = self.right.to_bytes(-(-self.n // 8), "little")
        return {"n": self.n, "errors": self.errors, "indices_sha256": self.digest,
                "bits": base64.b64encode(raw).decode("ascii")}

    @classmethod
    def from_dict(cls, split: str, d: dict, where: Path | str = layout.CORRECT_FILE) -> "Correctness":
        try:
            n, digest = int(d["n"]), str(d["indices_sha256"])
            right = int.from_bytes(base64.b64decode(d["bits"], validate=True), "little")
        except (KeyError, TypeError, ValueError) as e:
            raise ReslabError(f"{where}: split {split!r} is not a reslab-correct/1 entry ({e})") from None
        if right >> n or (int(d.get("errors", n - right.bit_count())) != n - right.bit_count()):
            raise ReslabError(f"{where}: split {split!r} has bits that do not match n={n} and its error count")
        return cls(split, n, digest, right)


def correct_document(iteration: int, vectors: list[Correctness]) -> dict:
    """What correct.json holds for the vectors of one evaluation point."""
    return {"format": CORRECT_FORMAT, "iteration": iteration, "splits": {v.split: v.as_dict() for v in vectors}}


def read_correct(doc: dict, where: Path | str = layout.CORRECT_FILE) -> dict[str, Correctness]:
    """{split: Correctness} of a correct.json document; one ReslabError line for a file of another format."""
    if not isinstance(doc, dict) or doc.get("format") != CORRECT_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ReslabError(f"{where}: format {got!r} is not {CORRECT_FORMAT!r}")
    return {split: Correctness.from_dict(split, d, where) for split, d in doc.get("splits", {}).items()}
