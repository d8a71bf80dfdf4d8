"""`reslab report STUDY_DIR`: (re)build a study's report from its runs."""
from __future__ import annotations

from pathlib import Path

from reslab.engine.progress import announce
from reslab.report import share_report, write_report


def configure(p) -> None:
    p.add_argument("study_dir", metavar="STUDY_DIR")


def run(a) -> int:
    paths = write_report(Path(a.study_dir), announce=announce)
    share_report(Path(a.study_dir))
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0
