"""`reslab study degradation|imagenet-style`: train a study's grid (resumable) on this machine, or submit it to a
cluster (--launcher submitit), then write its report; `reslab study status DIR`: where a study stands."""
from __future__ import annotations

import json
from pathlib import Path

from reslab import ReslabError, layout
from reslab.cli.common import HelpFormatter, add_data_dir, check_data_dir
from reslab.config import budget_seconds, from_dict, profile_name
from reslab.engine.device import resolve_device
from reslab.engine.signals import exit_code
from reslab.engine.summary import read_summary
from reslab.report import share_report, write_report
from reslab.study import KINDS, PlanRequest, run_study
from reslab.study.budget import plan_study
from reslab.study.spec import read_spec
from reslab.study.status import format_status, overall_line, study_status

# --flag: the launcher config key it sets (the same keys can be set in the profile's YAML, section launcher:)
LAUNCHER_FLAGS = {"launcher": "name", "cluster": "cluster", "partition": "partition", "gpus_per_run": "gpus_per_run",
                  "cpus_per_run": "cpus_per_run", "timeout_min": "timeout_min", "max_parallel": "max_parallel"}


def add_study_options(q, kind: str) -> None:
    """Options every study command shares (seeds, devices, data, output, overrides, report, quiet)."""
    q.add_argument("--seeds", type=int, default=1, help="repeat every model with this many seeds (train.seed, +1, ...)")
    q.add_argument("--devices", default=None, help="comma-separated devices, one run per device at a time in "
                   "separate processes (e.g. cuda:0,cuda:1); default: train.device of the profile")
    add_data_dir(q)
    q.add_argument("--out", default=None, help=f"study directory (default: studies/{kind}-<profile>); an "
                   "existing one holding the same study is resumed, never overwritten")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run of the study")
    q.add_argument("--budget", default=None, metavar="TIME", help="size the study to end within this wall time on "
                   "this machine (e.g. 15m, 1h30m; sets study.budget): each net's throughput is measured for a few "
                   "steps and the iteration count chosen to fit, the schedule scaled to it; the plan is stored in "
                   "the study and kept when it is rerun")
    q.add_argument("--no-report", action="store_true", help="train only; build the report later with reslab report")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    add_launcher_options(q)


def add_launcher_options(q) -> None:
    """Where the runs train; default: the profile's launcher section (itself defaulting to local)."""
    g = q.add_argument_group("launcher", "where the runs train (also settable in the profile YAML, section "
                             "launcher:); not part of what makes two studies the same")
    g.add_argument("--launcher", choices=("local", "submitit"), default=None,
                   help="local: this machine (--devices); submitit: one SLURM job per run (default: local)")
    g.add_argument("--cluster", choices=("slurm", "local"), default=None, help="submitit's executor: slurm, or "
                   "local (every job a process on this machine, to try the jobs without a cluster)")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--gpus-per-run", type=int, default=None, help="GPUs of each run's job (0 on CPU; default 1)")
    g.add_argument("--cpus-per-run", type=int, default=None, help="CPU cores of each run's job (default 8)")
    g.add_argument("--timeout-min", type=int, default=None, help="each job's time limit in minutes (default 240); "
                   "SLURM sends SIGUSR2 90 s before it, the run checkpoints and is requeued")
    g.add_argument("--max-parallel", type=int, default=None, help="jobs running at once (default 0: all)")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option, e.g. --slurm-extra account=myproj (repeatable)")
    g.add_argument("--wait", action="store_true", help="submitit: follow the jobs until they end")
    g.add_argument("--resubmit-failed", action="store_true", help="submitit: submit only the failed runs again")


def launcher_overrides(a) -> list[str]:
    """The launcher flags given, as --set overrides (they win over the profile's YAML)."""
    out = [f"launcher.{key}={getattr(a, flag)}" for flag, key in LAUNCHER_FLAGS.items() if getattr(a, flag) is not None]
    if a.slurm_extra:
        out.append(f"launcher.slurm_extra={json.dumps(a.slurm_extra)}")
    return out


def configure(p) -> None:
    fmt = HelpFormatter
    ssub = p.add_subparsers(dest="study_kind", required=True, metavar="STUDY")
    for kind in KINDS.values():  # one command per registered study kind
        q = ssub.add_parser(kind.name, formatter_class=fmt, help=kind.help, description=kind.description)
        # a kind whose --budget picks the shape must see whether --profile was given
        q.add_argument("--profile", default=None if kind.budget_picks_shape else kind.default_profile,
                       help=kind.profile_help)
        kind.add_arguments(q)
        add_study_options(q, kind.name)
    q = ssub.add_parser("status", formatter_class=fmt, help="every run's state, progress and ETA (reads only)",
                        description="Each run: pending / running (where) / finished / failed (last error line) / "
                                    "interrupted, iterations done, img/s, ETA; then the study's ETA.")
    q.add_argument("study_dir", metavar="STUDY_DIR")
    q.add_argument("--json", action="store_true", help="one JSON object instead of the table")


def run(a) -> int:
    if a.study_kind == "status":
        return show_status(Path(a.study_dir), a.json)
    check_data_dir(a.data_dir)
    data_dir = str(Path(a.data_dir).resolve()) if a.data_dir else None
    if a.budget is not None:
        try:
            budget_seconds(a.budget)
        except ReslabError:
            raise ReslabError(f"--budget {a.budget!r}: give a wall time like 15m, 1h30m or 900s") from None
    overrides = launcher_overrides(a) + a.overrides + ([f"study.budget={a.budget}"] if a.budget else [])
    kind = KINDS[a.study_kind]
    choose_shape = kind.budget_picks_shape and a.profile is None and a.budget is not None
    profile = a.profile or kind.default_profile
    spec = kind.plan(PlanRequest(profile, a.seeds, tuple(overrides), data_dir, vars(a)))
    out = Path(a.out) if a.out else Path("studies") / f"{a.study_kind}-{profile_name(profile)}"
    devices = [d.strip() for d in a.devices.split(",")] if a.devices else None
    for d in devices or []:
        resolve_device(d)
    if devices and len(devices) > 1 and from_dict(spec.base_config).study.budget:
        raise ReslabError("--budget plans for one device; with several --devices set train.iterations instead")
    spec = plan_study(spec, out, devices[0] if devices else None, choose_shape=choose_shape)
    if from_dict(spec.base_config).launcher.name == "submitit":
        return submit(a, spec, out)
    for flag, given in (("--wait", a.wait), ("--resubmit-failed", a.resubmit_failed)):
        if given:
            raise ReslabError(f"{flag} is for --launcher submitit; the local launcher runs the study in this command")
    if not run_study(spec, out, devices=devices, quiet=a.quiet):
        return stopped_exit_code(out)
    if from_dict(spec.base_config).data.test_subset == 0:
        print("[study] validation-only (data.test_subset=0): no test evaluation, so no report; the validation "
              f"errors are in {out}/runs/*/metrics.csv")
    elif not a.no_report:
        paths = write_report(out)
        share_report(out)
        print(f"[study] report: {paths['md']} and {paths['html']}")
    return 0


def stopped_exit_code(out: Path) -> int:
    """A study stopped by a signal exits as its interrupted run did (130 for Ctrl-C, 143 for SIGTERM)."""
    summaries = [read_summary(d) for d in sorted(layout.study_runs_dir(out).glob("*/"))]
    return max((exit_code(s.stopped_by) for s in summaries if s.status == "interrupted"), default=0)


def submit(a, spec, out: Path) -> int:
    """--launcher submitit: submit, print the job ids and return (or follow the jobs with --wait)."""
    from reslab.launchers.slurm import submit_study, wait_for_jobs  # imports submitit only when asked for

    if a.devices:
        raise ReslabError("--devices is for the local launcher; with --launcher submitit each run gets "
                          "--gpus-per-run GPUs of its own job")
    stored = submit_study(spec, out, from_dict(spec.base_config).launcher, a.resubmit_failed, not a.no_report)
    if stored and a.wait:
        wait_for_jobs(out)
        print(format_status(study_status(out)))
    return 0


def show_status(study_dir: Path, as_json: bool) -> int:
    """`reslab study status`: reads the study (and its jobs, if a launcher submitted them); never locks."""
    read_spec(study_dir)
    jobs = {}
    if (study_dir / layout.JOBS_FILE).exists():
        from reslab.launchers.slurm import job_states
        jobs = job_states(study_dir)
    states = study_status(study_dir, jobs)
    if as_json:
        print(json.dumps({"study": str(study_dir), "overall": overall_line(states),
                          "runs": [st.as_dict() for st in states], "jobs": jobs}))
    else:
        print(format_status(states))
    return 0
