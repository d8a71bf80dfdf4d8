"""Networks. Build them by name: `create_model("resnet56")`; list them: `list_models()`."""
from reslab.models.registry import create_model, list_models, model_exists, register_model
from reslab.models.profile import count_macs, count_params

__all__ = ["create_model", "list_models", "model_exists", "register_model", "count_macs", "count_params"]
