"""`reslab export SOURCE --format onnx|pt2|safetensors|folder --out PATH` (see reslab.export for the formats)."""
from __future__ import annotations

from reslab.export import FORMATS, export_model

DESCRIPTION = ("Export a run directory, a checkpoint file or a published model (by name) for use outside reslab: "
               "onnx and pt2 are the eval-mode net with BN folded and the input normalisation as explicit ops "
               "(float images in [0, 1]); safetensors and folder hold reslab's weights (folder: config.json + "
               "model.safetensors + a model card, the Hugging Face Hub layout).")


def configure(p) -> None:
    p.add_argument("source", metavar="RUN_DIR|CKPT|NAME", help="a run directory, a checkpoint file, an exported "
                   "folder, or a model name with published weights (e.g. resnet56; NAME@SOURCE, e.g. resnet20@reslab)")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", required=True, help="the file (or folder) to write; must not exist")


def run(a) -> int:
    out = export_model(a.source, a.format, a.out)
    print(f"wrote {out} ({a.format})")
    return 0
