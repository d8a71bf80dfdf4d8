"""reslab: reproduce the CIFAR-10 experiments of "Deep Residual Learning for Image Recognition".

The Python API mirrors the command line:

    from reslab.models import create_model, list_models
    from reslab.data import load_cifar10
    from reslab.config import load_config
    from reslab.engine import train, evaluate
"""

__version__ = "0.1.0"


class ReslabError(Exception):
    """An error the user can fix (bad input, missing file). The CLI prints it as one line, exit code 2."""
