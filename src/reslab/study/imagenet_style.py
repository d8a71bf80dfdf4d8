"""The ImageNet-style study on CIFAR-10: plain18, plain34, resnet18, resnet34 and resnet18_ms under one protocol.

It asks three questions (answered in words by reslab.report.imagenet_style):
  * does plain34 degrade against plain18 (the paper's Table 2 / Fig. 4 left, here on CIFAR)?
  * does resnet34 beat resnet18 (Fig. 4 right)?
  * does the multi-scale resnet18_ms beat resnet34 at a lower budget (docs/multiscale.md)?

Every run shares the study's base config (the profile plus any --set); a grid cell sets only the model name and
the seed. Under the default option-A shortcuts plainN and resnetN have equal parameters and, for the same seed,
identical initial weights, data order, augmentation and schedule.

Profiles: `full` = configs/imagenet_style.yaml (the published study's protocol, 150 epochs — a GPU job),
`quick` = configs/imagenet_style_quick.yaml (a reduced-width CPU run; see the numbers in that file), or any
YAML config file.
"""
from __future__ import annotations

from reslab import ReslabError
from reslab.config import load_config, profile_name, to_dict
from reslab.study.kind import PlanRequest, StudyKind
from reslab.study.spec import RunSpec, StudySpec

NAME = "imagenet-style"
PROFILES = {"full": "imagenet_style", "quick": "imagenet_style_quick"}
# (model, group, depth) in the order they train: the cheap nets first, so a stopped study has the pairs early.
MODELS = (("plain18", "plain", 18), ("resnet18", "resnet", 18), ("plain34", "plain", 34), ("resnet34", "resnet", 34),
          ("resnet18_ms", "ms", 18))


def plan_imagenet_style(profile: str = "full", seeds: int = 1, overrides: list[str] | None = None,
                        data_dir: str | None = None) -> StudySpec:
    if seeds < 1:
        raise ReslabError(f"--seeds {seeds}: must be at least 1")
    if profile not in PROFILES and not profile.endswith((".yaml", ".yml")):
        raise ReslabError(f"--profile {profile!r} is not allowed; allowed: {', '.join(PROFILES)}, or a YAML file")
    over = list(overrides or [])
    if data_dir is not None:
        over.append(f"data.dir={data_dir}")
    base = load_config(PROFILES.get(profile, profile), over, flag="--profile")
    spec = StudySpec(NAME, profile_name(profile), to_dict(base))
    for model, group, depth in MODELS:
        for s in range(seeds):
            seed = base.train.seed + s
            spec.runs.append(RunSpec(name=f"{model}-s{seed}", overrides={"model.name": model, "train.seed": seed},
                                     group=group, depth=depth))
    return spec


def plan(r: PlanRequest) -> StudySpec:
    return plan_imagenet_style(r.profile, r.seeds, list(r.overrides), r.data_dir)


KIND = StudyKind(NAME, help="plain18/34, resnet18/34 and the multi-scale resnet18_ms on CIFAR-10 (one protocol)",
                 description="Trains plain18, resnet18, plain34, resnet34 and resnet18_ms under one protocol and "
                             "reports degradation, depth and multi-scale verdicts. Rerunning the same command "
                             "resumes the study.",
                 profile_help="full (the published study's protocol: 150 epochs, batch 256; a GPU job), quick "
                              "(CPU, reduced width; see configs/imagenet_style_quick.yaml), or a YAML file",
                 default_profile="full", add_arguments=lambda q: None, plan=plan)
