"""The paper's main CIFAR experiment (Sec. 4.2, Fig. 6): plain vs residual nets of several depths.

Every run shares the study's base config (the profile plus any --set); a grid cell only sets the model name
and the seed. With option-A shortcuts plainN and resnetN have the same parameters and, for the same seed, the
same initial weights, see the same images in the same order and follow the same schedule — the shortcut is
the only difference.
"""
from __future__ import annotations

from reslab import ReslabError
from reslab.config import load_config, profile_name, to_dict
from reslab.models.cifar import cifar_depth_to_n
from reslab.study.kind import PlanRequest, StudyKind
from reslab.study.spec import RunSpec, StudySpec

NAME = "degradation"

DEFAULT_DEPTHS = (20, 32, 44, 56)
# The CPU profiles' grid is the smallest that shows both effects (see configs/quick.yaml, configs/hour.yaml).
PROFILE_DEPTHS = {"quick": (20, 56), "hour": (20, 56)}


def parse_depths(text: str | None, profile: str) -> tuple[int, ...]:
    if not text:
        return PROFILE_DEPTHS.get(profile_name(profile), DEFAULT_DEPTHS)
    try:
        depths = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise ReslabError(f"--depths {text!r} is not a comma-separated list of integers (e.g. 20,32,44,56)") from None
    for d in depths:
        cifar_depth_to_n(d)
    if len(set(depths)) != len(depths) or not depths:
        raise ReslabError(f"--depths {text!r}: give distinct depths, e.g. 20,56")
    return tuple(sorted(depths))


def plan_degradation(profile: str = "quick", depths=None, seeds: int = 1, overrides: list[str] | None = None,
                     data_dir: str | None = None) -> StudySpec:
    if seeds < 1:
        raise ReslabError(f"--seeds {seeds}: must be at least 1")
    depths = depths or parse_depths(None, profile)
    over = list(overrides or [])
    if data_dir is not None:
        over.append(f"data.dir={data_dir}")
    base = load_config(profile, over, flag="--profile")
    base_seed = base.train.seed
    spec = StudySpec(NAME, profile, to_dict(base))
    for depth in depths:
        for kind in ("plain", "resnet"):
            for s in range(seeds):
                seed = base_seed + s
                spec.runs.append(RunSpec(name=f"{kind}{depth}-s{seed}",
                                         overrides={"model.name": f"{kind}{depth}", "train.seed": seed},
                                         group=kind, depth=depth))
    return spec


def add_arguments(q) -> None:
    q.add_argument("--depths", default=None, help="comma-separated CIFAR depths (6n+2); default 20,56 for quick "
                   "and hour, 20,32,44,56 otherwise")


def plan(r: PlanRequest) -> StudySpec:
    return plan_degradation(r.profile, parse_depths(r.options.get("depths"), r.profile), r.seeds,
                            list(r.overrides), r.data_dir)


KIND = StudyKind(NAME, help="plain vs residual nets of several depths (the paper's Fig. 6 / Table 6)",
                 description="Trains {plain, resnet} x depths under one protocol; only the shortcut differs within "
                             "a pair. Rerunning the same command resumes the study.",
                 profile_help="quick (CPU, ~15 min), hour (CPU with native bf16, ~1 h, the full split), paper "
                              "(the full protocol, for a GPU), or a YAML config file; default: quick, or with "
                              "--budget the shape the budget buys here (hour where it fits, else quick)",
                 default_profile="quick", add_arguments=add_arguments, plan=plan, budget_picks_shape=True)
