"""Why residual learning works, measured: layer responses (the paper's Fig. 7) and gradient flow.

    from reslab.analysis import measure_responses, measure_gradients
    profiles = measure_responses(["runs/plain56-...", "runs/resnet56-..."], max_images=1000)
"""
from reslab.analysis.gradients import GradientProfile, gradient_norms, measure_gradients, plot_gradients
from reslab.analysis.responses import (ResponseProfile, capture_responses, layer_stds, measure_responses,
                                       plot_responses, response_layers)

__all__ = ["GradientProfile", "gradient_norms", "measure_gradients", "plot_gradients", "ResponseProfile",
           "capture_responses", "layer_stds", "measure_responses", "plot_responses", "response_layers"]
