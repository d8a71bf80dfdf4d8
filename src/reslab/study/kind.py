"""What a study kind is: one small protocol, registered once (reslab.study.KINDS), that the command line, the
runner, the status command and the report dispatch through.

A kind names itself (its `reslab study NAME` command and the `kind` in study.json), says what it is in one line
and a paragraph, says which profiles it takes, adds its own command-line arguments (e.g. --depths), and turns a
`PlanRequest` into the grid of runs (a `StudySpec`). The options every kind shares (--seeds, --devices, --out,
--set, --budget, the launcher) are added by the CLI. Its report is the module of the same name in reslab.report
(reslab.report.build.REPORTS), which asks its questions of the shared claims (reslab.report.claims).

Adding a kind = one module here (its `KIND = StudyKind(...)`, added to KINDS in reslab/study/__init__.py) and
one module in reslab.report (added to REPORTS); docs/architecture.md shows it step by step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from reslab.study.spec import StudySpec


@dataclass(frozen=True)
class PlanRequest:
    """What a study is asked to be: a profile, seeds, overrides (--set and the launcher flags), a data folder,
    and the kind's own options by name (e.g. {"depths": "20,56"}; absent or None: the kind's default)."""

    profile: str
    seeds: int = 1
    overrides: tuple[str, ...] = ()
    data_dir: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyKind:
    name: str                                # `reslab study NAME`, and study.json's kind
    help: str                                # one line in `reslab study --help`
    description: str                         # the command's own --help
    profile_help: str                        # what --profile takes, for its --help
    default_profile: str                     # --profile when none is given
    add_arguments: Callable[[Any], None]     # the kind's own arguments (besides --profile), on its subparser
    plan: Callable[[PlanRequest], StudySpec]
    budget_picks_shape: bool = False         # --budget without --profile picks the profile's shape (study.budget)
