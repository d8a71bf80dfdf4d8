"""Where a study stands, read from its directory alone: each run's state, progress, speed and ETA, and the
study's ETA. `reslab study status` prints it; the local runner prints its overall line between runs.

Reads only: a run being written is recognised by the record in its lock file (engine/lock.py), never by taking
the lock. States: pending (not started, or its cluster job waits), running (where: host and pid, or the job),
finished, failed (with its last error line), interrupted (stopped, killed or preempted: resumable).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from reslab import layout
from reslab.engine import lock
from reslab.engine.estimate import duration
from reslab.engine.summary import read_summary
from reslab.study.spec import read_spec


@dataclass
class RunState:
    name: str
    model: str
    state: str                    # pending | running | finished | failed | interrupted
    where: str | None = None      # host and pid of the writer, or the cluster job
    done: int = 0                 # iterations
    total: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None    # this run's remaining training time (None: no estimate yet)
    error: str | None = None      # failed: the last error line

    def as_dict(self) -> dict:
        return asdict(self)


def run_state(name: str, model: str, run_dir: Path) -> RunState:
    """One run's state from its files (summary.json, the lock's record)."""
    s = read_summary(run_dir)
    if s.missing:  # started and stopped before its first summary: resumable, as run_status says
        return RunState(name, model, "pending" if not run_dir.exists() else "interrupted")
    out = RunState(name, model, s.status, done=s.iterations_done, total=s.iterations,
                   images_per_s=s.train_images_per_s, error=s.error)
    held = lock.holder(run_dir)
    if out.state == "running" and held.get("alive") is False:
        out.state, out.error = "interrupted", f"its process (pid {held.get('pid')}) died without stopping"
    elif out.state == "running" and held:
        out.where = f"{held.get('host')} pid {held.get('pid')}"
    elif out.state == "running":
        out.state = "interrupted"
    elif out.state == "interrupted" and s.stopped_by:
        out.where = f"stopped by {s.stopped_by}"
    return out


def study_status(study_dir: Path, jobs: dict[str, dict] | None = None) -> list[RunState]:
    """Every run of the study, in the study's order, with ETAs. `jobs` ({run name: {"job": id, "state": ...,
    "error": ...}}, from a cluster launcher) says where pending runs wait and why failed jobs failed."""
    study_dir = Path(study_dir)
    spec = read_spec(study_dir)
    batch = spec.base_config.get("train", {}).get("batch_size", 128)
    states = [run_state(r.name, r.overrides.get("model.name", "?"), layout.study_run_dir(study_dir, r.name))
              for r in spec.runs]
    for st in states:
        add_job(st, (jobs or {}).get(st.name))
    planned = (spec.plan or {}).get("speeds", {})  # a budgeted study: each model's probe, before it trains
    known_total = next((st.total for st in states if st.total), (spec.plan or {}).get("iterations"))
    speed = {m: s["train_images_per_s"] for m, s in planned.items()}
    speed.update({st.model: st.images_per_s for st in states if st.images_per_s})
    typical = sum(speed.values()) / len(speed) if speed else None  # a model not measured yet: a rough guess
    for st in states:
        st.total = st.total or known_total
        ips = st.images_per_s or speed.get(st.model, typical)
        if st.state not in ("finished", "failed") and st.total and ips:
            st.eta_s = (st.total - st.done) * batch / ips
    return states


def add_job(st: RunState, job: dict | None) -> None:
    """What the scheduler knows, where the run's files do not tell: a job waiting, or one that failed."""
    if not job or st.state in ("finished", "failed"):
        return
    if job["state"] in ("PENDING", "REQUEUED", "CONFIGURING") and st.state != "running":
        st.state, st.where = "pending", f"job {job['job']} ({job['state'].lower()})"
    elif job["state"] in ("RUNNING", "COMPLETING") and st.state != "running":
        st.state, st.where = "running", f"job {job['job']}"
    elif job["state"] not in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "COMPLETED", "UNKNOWN"):
        st.state, st.where, st.error = "failed", f"job {job['job']}", job.get("error") or f"job {job['state']}"


def study_eta(states: list[RunState]) -> float | None:
    """Seconds until every run has ended: the runs left, one after another, shared over the runs training now
    (at least one). None until some run has trained long enough to measure its speed."""
    left = [st for st in states if st.state not in ("finished", "failed")]
    etas = [st.eta_s for st in left if st.eta_s is not None]
    if len(etas) < len(left):
        return None
    return sum(etas) / max(1, sum(st.state == "running" for st in states))


def overall_line(states: list[RunState]) -> str:
    """'6 of 10 runs ended (5 finished, 1 failed), 2 running; study ETA 1h05m'."""
    ended = [st for st in states if st.state in ("finished", "failed")]
    eta = study_eta(states)
    counts = ", ".join(f"{sum(st.state == k for st in ended)} {k}" for k in ("finished", "failed")
                       if any(st.state == k for st in ended))
    running = sum(st.state == "running" for st in states)
    return (f"{len(ended)} of {len(states)} runs ended" + (f" ({counts})" if counts else "")
            + (f", {running} running" if running else "")
            + (f"; study ETA {duration(eta)}" if eta is not None else "; study ETA: once a run has been measured"))


def format_status(states: list[RunState]) -> str:
    """The table `reslab study status` prints, and the overall line under it."""
    lines = [f"{'run':<18} {'state':<12} {'iterations':>13} {'img/s':>7} {'ETA':>7}  where / error"]
    for st in states:
        its = f"{st.done}/{st.total}" if st.total else "-"
        ips = f"{st.images_per_s:.0f}" if st.images_per_s else "-"
        eta = duration(st.eta_s) if st.state not in ("finished", "failed") else "-"
        lines.append(f"{st.name:<18} {st.state:<12} {its:>13} {ips:>7} {eta:>7}  {st.error or st.where or ''}")
    return "\n".join(lines + ["", overall_line(states)])
