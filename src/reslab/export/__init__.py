"""Weights out: `reslab export` and `save_pretrained`.

Formats (the source is a run directory, a checkpoint file or a published model name):
  onnx         the eval-mode net with BatchNorm folded into the convolutions, the input normalisation as
               explicit subtract/divide ops at the front: float images in [0, 1], shape (N, 3, 32, 32), dynamic N
               (torch's dynamo exporter; needs onnx + onnxscript)
  pt2          the same graph through torch.export (load with torch.export.load); TorchScript is not offered
  safetensors  reslab's own state dict (BN not folded: it loads back into the reslab model with
               `create_model(name, pretrained=FILE)`); model name, kwargs and normalisation in the file's metadata
  folder       config.json + model.safetensors + README.md (a model card): the Hugging Face Hub layout;
               `reslab.models.from_pretrained(DIR)` loads it back
Nothing is written until the source has loaded; an existing output is never overwritten.
"""
from reslab.export.exporters import FORMATS, export_model, save_pretrained

__all__ = ["FORMATS", "export_model", "save_pretrained"]
