"""Verdicts in words from the Fig. 7 and gradient numbers.

The verdicts are pure functions of the measured numbers (tests flip the numbers and watch the words flip);
reslab.report.sections turns them into the study report's analysis sections.
"""
from __future__ import annotations

from statistics import median

from reslab.analysis.gradients import GradientProfile, first_to_last_ratio
from reslab.analysis.responses import ResponseProfile
from reslab.analysis.verdicts import Verdict

# A gradient that reaches the first layers at less than a tenth of its size at the last layers is called
# vanishing; an order of magnitude is where the first layers start learning visibly slower than the last.
VANISHING = 0.1
EDGE_LAYERS = 3  # layers averaged at each end for the first-to-last ratio


def _mean_by_model(profiles: list[ResponseProfile]) -> dict[str, ResponseProfile]:
    """One profile per model name: layer-wise mean over seeds (runs of one model share one architecture)."""
    by: dict[str, list[ResponseProfile]] = {}
    for p in profiles:
        by.setdefault(p.model_name, []).append(p)
    out = {}
    for name, ps in by.items():
        n = len(ps)
        mean = [sum(p.std[i] for p in ps) / n for i in range(len(ps[0].std))]
        out[name] = ResponseProfile(name, name, ps[0].group, ps[0].depth, "", None, ps[0].split, ps[0].images,
                                    list(ps[0].layers), mean, [])
    return out


def response_pair_verdict(plain: ResponseProfile, resnet: ResponseProfile) -> Verdict:
    """The paper: a ResNet's responses are smaller than its plain twin's, layer by layer."""
    claim = f"Fig. 7: {resnet.model_name} responses smaller than {plain.model_name}'s"
    if len(plain.std) != len(resnet.std):
        return Verdict(claim, f"{resnet.model_name} and {plain.model_name} have different numbers of "
                       f"3x3 layers ({len(resnet.std)} vs {len(plain.std)}); not compared layer by layer", None,
                       assessed=False)
    y = len(plain.std)
    x = sum(r < p for r, p in zip(resnet.std, plain.std))
    ratio = median(r / p for r, p in zip(resnet.std, plain.std) if p > 0)
    holds = x > y / 2
    return Verdict(claim,
                   f"{resnet.model_name} responses are smaller than {plain.model_name} in {x} of {y} layers "
                   f"(median std ratio {resnet.model_name}/{plain.model_name} {ratio:.2f}) — "
                   + ("as in the paper" if holds else "not as in the paper"), holds)


def response_depth_verdict(shallow: ResponseProfile, deep: ResponseProfile) -> Verdict:
    """The paper: the deeper ResNet has smaller responses. Layer counts differ, so compare the mean over layers."""
    a, b = (sum(p.std) / len(p.std) for p in (shallow, deep))
    holds = b < a
    return Verdict(f"Fig. 7: deeper {deep.model_name} responses smaller than {shallow.model_name}'s",
                   f"the deeper {deep.model_name} has {'smaller' if holds else 'larger'} responses than "
                   f"{shallow.model_name} (mean std over layers {b:.3f} vs {a:.3f}) — "
                   + ("as in the paper" if holds else "not as in the paper"), holds)


def response_verdicts(profiles: list[ResponseProfile]) -> list[Verdict]:
    models = _mean_by_model(profiles)
    out = []
    depths = sorted({p.depth for p in models.values() if p.depth is not None})
    for d in depths:
        plain = next((p for p in models.values() if p.depth == d and p.group == "plain"), None)
        res = next((p for p in models.values() if p.depth == d and p.group == "resnet"), None)
        if plain and res:
            out.append(response_pair_verdict(plain, res))
    resnets = sorted((p for p in models.values() if p.group == "resnet" and p.depth), key=lambda p: p.depth)
    out += [response_depth_verdict(a, b) for a, b in zip(resnets, resnets[1:])]
    return out


def gradient_verdict(profile: GradientProfile) -> Verdict:
    """Does the gradient reach the first layers? The first-to-last norm ratio at every measured point; below
    VANISHING it vanishes, above 1/VANISHING it grows toward the input (explodes)."""
    parts, ratios = [], []
    for pt in profile.points:
        r = first_to_last_ratio(pt.grad_norm, EDGE_LAYERS)
        ratios.append(r)
        parts.append(f"{r:.2g}x at {'initialisation' if pt.iteration == 0 else f'iteration {pt.iteration}'}")
    vanishing = min(ratios) < VANISHING
    exploding = [p for p, r in zip(profile.points, ratios) if r > 1 / VANISHING]
    word = (f"vanishing (below {VANISHING:g}x)" if vanishing else
            f"no vanishing gradient (never below {VANISHING:g}x)")
    if exploding:
        where = ", ".join("initialisation" if p.iteration == 0 else f"iteration {p.iteration}" for p in exploding)
        word += f"; growing toward the input at {where} (exploding: above {1 / VANISHING:g}x)"
    return Verdict("Gradient flow",
                   f"{profile.label}: gradient norm of the first {EDGE_LAYERS} conv layers over the last "
                   f"{EDGE_LAYERS}: {', '.join(parts)} — {word}", not vanishing)


def gradient_verdicts(profiles: list[GradientProfile]) -> list[Verdict]:
    return [gradient_verdict(p) for p in sorted(profiles, key=lambda p: (p.group != "plain", p.depth or 0, p.label))]
