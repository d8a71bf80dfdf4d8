"""What a study is: its kind, profile, base config and grid of runs (`StudySpec`), and its directory.

Layout:  STUDY/study.json          what was asked (kind, profile, base config, the runs), and the plan a --budget
                                   led to (kept on rerun; not part of what makes two studies the same)
         STUDY/base_config.yaml    the base config, readable
         STUDY/runs/<name>/        one ordinary reslab run directory per grid cell (e.g. plain56-s0)
         STUDY/report/             report.md, report.html, figures (written by reslab.report from the runs)
         STUDY/.lock               held by the one process writing the study (engine/lock.py)
         STUDY/jobs.json           the cluster jobs of its runs, when a launcher submitted them
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from reslab import ReslabError, layout
from reslab.config import dump_yaml, flatten, from_dict, from_flat, to_dict, validate
from reslab.engine import lock, runs
from reslab.engine.summary import MISSING, read_summary
from reslab.weights.files import atomic_write_text



@dataclass
class RunSpec:
    name: str                     # directory name inside STUDY/runs
    overrides: dict               # flat config overrides on top of the study's base config
    group: str = ""               # e.g. "plain" / "resnet" (for the report)
    depth: int | None = None


@dataclass
class StudySpec:
    kind: str
    profile: str
    base_config: dict
    runs: list[RunSpec] = field(default_factory=list)
    # what study.budget chose on the machine that started the study (reslab.study.budget): "overrides" for every
    # run, the throughput measured per model, the estimate; None: the profile's schedule as it is
    plan: dict | None = None

    def to_json(self) -> dict:
        d = {"kind": self.kind, "profile": self.profile, "base_config": self.base_config,
             "runs": [asdict(r) for r in self.runs]}
        return {**d, "plan": self.plan} if self.plan is not None else d

    @classmethod
    def from_json(cls, d: dict) -> "StudySpec":
        return cls(d["kind"], d["profile"], d["base_config"], [RunSpec(**r) for r in d["runs"]], d.get("plan"))

    def overrides(self, run: RunSpec) -> dict:
        """The flat config keys `run` sets on top of the base config: the plan's, then the grid cell's."""
        return {**(self.plan or {}).get("overrides", {}), **run.overrides}

    def config(self):
        """The config every run shares: the base config with the plan's keys (a --budget study's schedule)."""
        return validate(from_flat((self.plan or {}).get("overrides", {}), from_dict(self.base_config)))

    def run_config(self, run: RunSpec):
        return validate(from_flat(run.overrides, self.config()))


def run_status(run_dir: Path) -> str:
    """missing (no run directory: train it) | running/interrupted (resumable) | finished | failed. A directory
    without a summary yet is a run that was started and stopped: resumable, as an interrupted one."""
    s = read_summary(run_dir)
    if s.missing:
        return MISSING if not Path(run_dir).exists() else "interrupted"
    return s.status


def _comparable(spec: StudySpec) -> dict:
    """What makes two studies the same: the spec with its base config completed by today's defaults (a study
    made before a config field existed still matches the same command: the new field at its default changes
    nothing it trained), less what only says where the numbers are shown (train.loggers, the log section) and
    where the runs train (the launcher section), and how it was sized (the study section and the plan it led to:
    a rerun keeps the stored plan): rerunning a study with another launcher or budget is the same study."""
    d = spec.to_json()
    d.pop("plan", None)
    try:
        d["base_config"] = to_dict(from_dict(d["base_config"]))
    except ReslabError:  # a field that no longer exists: compare as stored (and so differ)
        pass
    d["base_config"] = {**d["base_config"], "log": None, "launcher": None, "study": None,
                        "train": {k: v for k, v in d["base_config"].get("train", {}).items() if k != "loggers"}}
    return d


def check_study(spec: StudySpec, out: Path) -> bool:
    """Refuse a directory that holds a different study, or anything but a study; True if it holds this one.
    Reads only."""
    f = Path(out) / layout.STUDY_FILE
    if f.exists():
        old, new = _comparable(StudySpec.from_json(runs.read_json(f))), _comparable(spec)
        if old != new:
            raise ReslabError(f"{out} holds a different study ({spec_difference(old, new)}); pass --out NEW_DIR "
                              f"for a new study, or rerun the original command to resume it")
        return True
    if Path(out).exists() and any(p.name != layout.LOCK_FILE for p in Path(out).iterdir()):
        raise ReslabError(f"{out} exists and is not a reslab study; pass --out NEW_DIR")
    return False


def open_study(spec: StudySpec, out: Path, warn=print) -> lock.DirLock:
    """Create the study directory, or reopen it if it holds the same study (never mix two studies), and take its
    lock: the caller is the study's one writer until it releases it. Nothing is written before the directory is
    known to fit and the lock is held."""
    out = Path(out)
    check_study(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    held = lock.acquire(out, "study", warn)
    try:
        if not check_study(spec, out):  # again under the lock: another writer may have just made it
            layout.study_runs_dir(out).mkdir(exist_ok=True)
            runs.write_json(out / layout.STUDY_FILE, spec.to_json())
            atomic_write_text(out / "base_config.yaml", dump_yaml(from_dict(spec.base_config)))
    except BaseException:
        held.release()
        raise
    return held


def spec_difference(old: dict, new: dict) -> str:
    """What differs between two studies, in words: the config keys with both values, or the other fields."""
    parts = [k for k in ("kind", "profile", "runs") if old[k] != new[k]]
    a, b = flatten(old["base_config"]), flatten(new["base_config"])
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    parts += [f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in keys[:3]] + (["..."] if len(keys) > 3 else [])
    return "its " + "; ".join(parts) + (" differ" if not keys else "")


def read_spec(study_dir: Path) -> StudySpec:
    """The spec of an existing study, or a one-line error if `study_dir` holds none."""
    f = Path(study_dir) / layout.STUDY_FILE
    if not f.is_file():
        raise ReslabError(f"{study_dir} is not a reslab study (no {layout.STUDY_FILE})")
    return StudySpec.from_json(runs.read_json(f))
