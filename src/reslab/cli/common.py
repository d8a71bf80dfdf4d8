"""Options and checks several commands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from reslab import ReslabError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help — unless it is None or the help already says what it is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or "default" in text or not text:
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
