"""`reslab study degradation|imagenet-style`: train a study's grid (resumable), then write its report."""
from __future__ import annotations

from pathlib import Path

from reslab.cli.common import HelpFormatter, add_data_dir, check_data_dir
from reslab.config import profile_name
from reslab.engine.device import resolve_device
from reslab.report import write_report
from reslab.study import plan_degradation, plan_imagenet_style, run_study
from reslab.study.degradation import parse_depths


def add_study_options(q, kind: str) -> None:
    """Options every study command shares (seeds, devices, data, output, overrides, report, quiet)."""
    q.add_argument("--seeds", type=int, default=1, help="repeat every model with this many seeds (train.seed, +1, ...)")
    q.add_argument("--devices", default=None, help="comma-separated devices, one run per device at a time in "
                   "separate processes (e.g. cuda:0,cuda:1); default: train.device of the profile")
    add_data_dir(q)
    q.add_argument("--out", default=None, help=f"study directory (default: studies/{kind}-<profile>); an "
                   "existing one holding the same study is resumed, never overwritten")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run of the study")
    q.add_argument("--no-report", action="store_true", help="train only; build the report later with reslab report")
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def configure(p) -> None:
    fmt = HelpFormatter
    ssub = p.add_subparsers(dest="study_kind", required=True, metavar="STUDY")
    q = ssub.add_parser("degradation", formatter_class=fmt,
                        help="plain vs residual nets of several depths (the paper's Fig. 6 / Table 6)",
                        description="Trains {plain, resnet} x depths under one protocol; only the shortcut differs "
                                    "within a pair. Rerunning the same command resumes the study.")
    q.add_argument("--profile", default="quick", help="quick (CPU, ~15 min), paper (the full protocol, for a GPU), "
                   "or a YAML config file")
    q.add_argument("--depths", default=None, help="comma-separated CIFAR depths (6n+2); default 20,56 for quick, "
                   "20,32,44,56 otherwise")
    add_study_options(q, "degradation")
    q = ssub.add_parser("imagenet-style", formatter_class=fmt,
                        help="plain18/34, resnet18/34 and the multi-scale resnet18_ms on CIFAR-10 (one protocol)",
                        description="Trains plain18, resnet18, plain34, resnet34 and resnet18_ms under one protocol "
                                    "and reports degradation, depth and multi-scale verdicts. Rerunning the same "
                                    "command resumes the study.")
    q.add_argument("--profile", default="full", help="full (the published study's protocol: 150 epochs, batch 256; "
                   "a GPU job), quick (CPU, reduced width; see configs/imagenet_style_quick.yaml), or a YAML file")
    add_study_options(q, "imagenet-style")


def run(a) -> int:
    check_data_dir(a.data_dir)
    data_dir = str(Path(a.data_dir).resolve()) if a.data_dir else None
    if a.study_kind == "imagenet-style":
        spec = plan_imagenet_style(a.profile, a.seeds, a.overrides, data_dir)
    else:
        spec = plan_degradation(a.profile, parse_depths(a.depths, a.profile), a.seeds, a.overrides, data_dir)
    devices = [d.strip() for d in a.devices.split(",")] if a.devices else None
    for d in devices or []:
        resolve_device(d)
    out = Path(a.out) if a.out else Path("studies") / f"{a.study_kind}-{profile_name(a.profile)}"
    complete = run_study(spec, out, devices=devices, quiet=a.quiet)
    if complete and not a.no_report:
        paths = write_report(out)
        print(f"[study] report: {paths['md']} and {paths['html']}")
    return 0
