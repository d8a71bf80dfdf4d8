"""`reslab models`: every registered model with its parameters and MACs, beside the paper's figures."""
from __future__ import annotations

import json

from reslab.models import count_macs, count_params, create_model, list_models, model_info
from reslab.models.imagenet import macs_at_224
from reslab.models.paper import TABLE1_MACS, TABLE6_PARAMS


def configure(p) -> None:
    p.add_argument("--filter", default=None, help="only names containing this text")
    p.add_argument("--json", action="store_true", help="print JSON")


def model_rows(name_filter: str | None) -> list[dict]:
    rows = []
    for name in list_models():
        if name_filter and name_filter not in name:
            continue
        m = create_model(name)
        row = {"name": name, "parameters": count_params(m), "macs_32": count_macs(m, (3, 32, 32))}
        if model_info(name).accepts("stem"):  # 224x224 only where it means something: nets that take stem=imagenet
            row["macs_224"] = macs_at_224(m, row["macs_32"])
        rows.append(row)
    return rows


def paper_columns(name: str) -> tuple[str, str]:
    """The paper's parameter count (Table 6, CIFAR nets) and 224x224 MACs (Table 1, ImageNet nets) for `name`."""
    info = model_info(name)
    if info.family == "cifar":
        return TABLE6_PARAMS.get(info.depth, ""), ""
    if info.family == "imagenet-style" and not name.endswith("_ms"):
        return "", TABLE1_MACS.get(info.depth, "")
    return "", ""


def run(a) -> int:
    rows = model_rows(a.filter)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"{'model':<14}{'parameters':>14}{'(paper)':>9}{'MACs @32x32':>16}{'MACs @224x224':>16}{'(paper)':>9}")
    for r in rows:
        ref, ref224 = paper_columns(r["name"])
        m224 = f"{r['macs_224'] / 1e9:>14.2f}G" if r.get("macs_224") else f"{'–':>15}"
        print(f"{r['name']:<14}{r['parameters']:>14,}{ref:>9}{r['macs_32'] / 1e6:>14.1f}M{m224}{ref224:>9}")
    print("\nAlso: resnetN / plainN for any CIFAR depth N = 6n+2 (e.g. resnet8, plain74).")
    print("Parameters and MACs @32x32: the model as built by default (10 classes, option-A shortcuts, CIFAR stem). "
          "MACs @224x224: ImageNet-style nets with stem=imagenet (paper: He et al. 2016, Table 1).")
    return 0
