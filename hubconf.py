"""torch.hub entry points: every model reslab registers, by name, with `pretrained=` as in reslab.

    net = torch.hub.load("path/to/reslab", "resnet56", source="local", pretrained=True, normalize_input=True)
    logits = net(torch.rand(8, 3, 32, 32))           # images in [0, 1]: the normalisation is the first layer

    model = torch.hub.load("path/to/reslab", "resnet56", source="local", pretrained=True)
    logits = model(model.normalizer(uint8_images))   # takes normalised input; carries its normalisation

Published weights download once into torch's hub cache and are sha256-checked at every load. Works from a
plain clone: the package is imported from src/ (reslab need not be installed).
"""
import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from reslab.models import create_model as _create_model  # noqa: E402
from reslab.models import list_models as _list_models  # noqa: E402
from reslab.models import model_info as _model_info  # noqa: E402

dependencies = ["torch", "numpy"]


def _entry(name: str):
    def entry(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained or None, **kwargs)

    info = _model_info(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{(info.builder.__doc__ or name).strip()}\n\n"
                     f"pretrained: False (fresh initialisation), True / 'akamaster' (published weights, where they "
                     f"exist), or a reslab checkpoint, run directory or exported folder.\n"
                     f"normalize_input=True: the net takes images in [0, 1]. Other keyword arguments go to the model "
                     f"(shortcut, num_classes, ...).")
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
