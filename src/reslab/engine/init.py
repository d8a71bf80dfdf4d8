"""Starting a run from trained weights (`model.init_from`): weights only — a fresh optimiser and schedule.

The source is anything `create_model(pretrained=...)` takes (a run directory, a checkpoint, an exported folder)
or a model name with published weights. It must be the same architecture as the run's model; a different number
of classes (CIFAR-100 from a CIFAR-10 net) keeps everything but the classifier, which stays freshly initialised.
"""
from __future__ import annotations


import torch.nn as nn

from reslab import ReslabError
from reslab.models import model_info
from reslab.weights import Pretrained, load_source
from reslab.weights.files import load_weights

CLASSIFIER = ("fc.weight", "fc.bias")


def load_init(source: str) -> Pretrained:
    try:
        return load_source(source)
    except ReslabError as e:
        raise ReslabError(f"model.init_from: {e}") from None


def apply_init(model: nn.Module, init: Pretrained, model_name: str, source: str) -> str:
    """Load `init` into the freshly built `model`; returns what was done, in one line for the run's log."""
    if not model_info(init.model).same_architecture(model_info(model_name)):
        raise ReslabError(f"model.init_from={source!r} holds weights of {init.model}, but this run trains "
                          f"{model_name}; pick weights of {model_name} or set model.name={init.model}")
    state, own = dict(init.state), model.state_dict()
    replaced = [k for k in CLASSIFIER if k in state and k in own and state[k].shape != own[k].shape]
    for k in replaced:
        state[k] = own[k]
    load_weights(model, state, f"model.init_from={source!r}")
    o = init.origin
    where = {"published": f"published by {o.get('project')}, test error {o.get('published_test_error')}%",
             "checkpoint": f"checkpoint {o.get('path')}, iteration {o.get('iteration')}",
             "exported": f"exported {o.get('path')}"}.get(o.get("kind", ""), str(o))
    what = f"initial weights: {init.model} from {source} ({where}); fresh optimiser and schedule"
    if replaced:
        what += (f"; classifier replaced ({init.state['fc.weight'].shape[0]} classes in the source, "
                 f"{own['fc.weight'].shape[0]} here) and freshly initialised")
    return what
