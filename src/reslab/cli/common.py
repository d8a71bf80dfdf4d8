"""Options and checks several commands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from reslab import ReslabError


def informative_default(action: argparse.Action) -> bool:
    """Whether "(default: X)" tells a reader anything: not for flags (store_true/false/const: their help says what
    giving them does), nor for None, False or an empty list/string (= "not given")."""
    default = action.default
    if action.nargs == 0 or default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple, dict, str)) and len(default) == 0)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help — only where the default is informative and the help does not
    already say what it is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not text or "default" in text.lower() or not informative_default(action):
            return text
        return super()._get_help_string(action)


def add_data_dir(p) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding cifar-10-python.tar.gz or cifar-10-batches-py/ (default: $RESLAB_DATA_DIR, "
                        "else ~/.cache/reslab/data, downloading the official archive if it is empty)")


def check_data_dir(data_dir: str | None) -> None:
    """An explicit --data-dir must exist (reslab downloads only into the default location)."""
    if data_dir is not None and not Path(data_dir).exists():
        raise ReslabError(f"--data-dir {data_dir} does not exist")
