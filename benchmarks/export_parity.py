"""Export parity on real CIFAR-10: a published ResNet exported to ONNX, torch.export (pt2) and a folder, each run
on the first N official test images and compared with reslab's own PyTorch forward pass.

    RESLAB_WEIGHTS_DIR=../shared/peer/akamaster python benchmarks/export_parity.py --data-dir ../shared/data

Prints one line per format (max |logit difference|, top-1 agreement, file size) and writes
benchmarks/results/export-parity.json.
"""
import argparse
import json
import tempfile
from pathlib import Path

import torch

from reslab.bench import machine
from reslab.data import load_cifar10
from reslab.export import export_model
from reslab.models import create_model, from_pretrained


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "export-parity.json"))
    a = ap.parse_args()
    data = load_cifar10(a.data_dir)
    x = data.test_images[:a.images].float() / 255  # images in [0, 1], what the exported graphs take
    reference = create_model(a.model, pretrained=True, normalize_input=True).eval()
    with torch.no_grad():
        want = reference(x)
    labels = data.test_labels[:a.images]
    results = {"model": a.model, "images": a.images, "torch": torch.__version__, "cpu": machine()["cpu"],
               "pytorch_top1_error": round(100 * float((want.argmax(1) != labels).float().mean()), 2)}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("onnx", "m.onnx"), ("pt2", "m.pt2"), ("folder", "m")):
            path = export_model(a.model, fmt, Path(tmp) / name)
            with torch.no_grad():
                if fmt == "onnx":
                    import onnxruntime as ort
                    got = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})[0])
                elif fmt == "pt2":
                    got = torch.export.load(str(path)).module()(x)
                else:
                    got = from_pretrained(path, normalize_input=True).eval()(x)
            row = {"max_abs_logit_diff": float((got - want).abs().max()),
                   "top1_agreement": float((got.argmax(1) == want.argmax(1)).float().mean()), "bytes": size_of(path)}
            results[fmt] = row
            print(f"{fmt:7} max |diff| {row['max_abs_logit_diff']:.2e}  "
                  f"top-1 agreement {100 * row['top1_agreement']:.1f}%"
                  f"  {row['bytes'] / 1e6:.2f} MB")
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"PyTorch top-1 error on these {a.images} images: {results['pytorch_top1_error']}%; wrote {a.out}")


if __name__ == "__main__":
    main()
