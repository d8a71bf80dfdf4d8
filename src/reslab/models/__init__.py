"""Networks. Build them by name: `create_model("resnet56")`; list them: `list_models()`.

Importing this package imports every family module (cifar, imagenet, multiscale), whose builders register
themselves in `registry`; the registry itself never imports a family.
"""
from reslab.models.registry import ModelInfo, family_members, list_models, model_exists, model_info, register_model
from reslab.models.profile import count_macs, count_params
from reslab.models import cifar, imagenet, multiscale  # noqa: F401,E402  (registration by import)
from reslab.models.factory import create_model, from_pretrained, model_from_weights  # noqa: E402
from reslab.models.build import model_from_checkpoint, model_from_config, model_kwargs  # noqa: E402

__all__ = ["ModelInfo", "create_model", "from_pretrained", "model_from_weights", "family_members", "list_models",
           "model_exists", "model_info",
           "register_model", "count_macs", "count_params", "model_from_checkpoint", "model_from_config", "model_kwargs"]
