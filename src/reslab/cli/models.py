"""`reslab models`: every registered model with its parameters and MACs, beside the paper's figures."""
from __future__ import annotations

import json

from reslab import ReslabError
from reslab.models import count_macs, count_params, create_model, list_models, model_exists, model_info
from reslab.models.cifar import TWIN_NAMES
from reslab.models.imagenet import macs_at_224
from reslab.models.paper import TABLE1_MACS, TABLE6_PARAMS


def configure(p) -> None:
    p.add_argument("--filter", default=None, metavar="TEXT",
                   help="only models whose name or family contains TEXT (any case), e.g. cifar, imagenet, "
                        "resnet1, _ms; or one model's exact name, e.g. resnet8")
    p.add_argument("--json", action="store_true", help="print JSON")


def listed_models() -> list[str]:
    """What `reslab models` lists: every registered name, then the CIFAR nets at depths whose plain names the
    ImageNet-style family owns (cifar_resnet50, ...), which would otherwise be found only by pattern."""
    return list_models() + list(TWIN_NAMES)


def matching_models(name_filter: str | None) -> list[str]:
    """The listed models whose name or family contains `name_filter` (case-insensitive), or the model it names
    exactly (any resnetN/plainN); a filter matching nothing is a one-line error naming what exists."""
    names = listed_models()
    if not name_filter:
        return names
    text = name_filter.lower()
    found = [n for n in names if text in n.lower() or text in model_info(n).family.lower()]
    if not found and model_exists(name_filter):
        found = [name_filter]
    if not found:
        families = sorted({model_info(n).family for n in names})
        raise ReslabError(f"--filter {name_filter!r} matches no model name or family; families: "
                          f"{', '.join(families)}; names: {', '.join(names)}; or resnetN/plainN for any CIFAR "
                          f"depth N = 6n+2")
    return found


def model_rows(name_filter: str | None) -> list[dict]:
    rows = []
    for name in matching_models(name_filter):
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
    print(f"{'model':<16}{'parameters':>14}{'(paper)':>9}{'MACs @32x32':>16}{'MACs @224x224':>16}{'(paper)':>9}")
    for r in rows:
        ref, ref224 = paper_columns(r["name"])
        m224 = f"{r['macs_224'] / 1e9:>14.2f}G" if r.get("macs_224") else f"{'–':>15}"
        print(f"{r['name']:<16}{r['parameters']:>14,}{ref:>9}{r['macs_32'] / 1e6:>14.1f}M{m224}{ref224:>9}")
    print("\nAlso: resnetN / plainN (or cifar_resnetN / cifar_plainN) for any CIFAR depth N = 6n+2 (e.g. resnet8, "
          "plain74); --filter NAME shows one.")
    print("Parameters and MACs @32x32: the model as built by default (10 classes, option-A shortcuts, CIFAR stem). "
          "MACs @224x224: ImageNet-style nets with stem=imagenet (paper: He et al. 2016, Table 1).")
    return 0
