"""`reslab study ... --launcher submitit`: one cluster job per run, submitted to SLURM through submitit.

`submit_study` opens the study (its lock, while it submits), submits the runs that have not ended as one job
array (`--partition`, `--gpus-per-run`, `--cpus-per-run`, `--timeout-min`, `--max-parallel`, `--slurm-extra`),
then one job that builds the report once the array has ended (`reslab report STUDY`, as a command), stores the
job ids in STUDY/jobs.json, prints them and returns: the study directory stays the single source of truth, and
`reslab study status` / `reslab report` read it as for a local study.

Each job is `TrainJob`: the run's `reslab train` (start, or resume the run directory), in the job's own process.
Preemption and time limits: SLURM sends SIGUSR2 90 s ahead (`--signal=USR2@90`). SIGUSR2 is one of reslab's
stop signals (engine/signals.py), so the run checkpoints at the next step boundary and `train` returns; the job
then raises SIGUSR2 again for submitit's own handler (ours only replaced it during training), which requeues the
same call, and the requeued job resumes the run exactly. submitit counts a signal as a time-out (requeued at
most `max_requeues` times) once the job has run min(80 % of its limit, limit - 10 min), else as a preemption
(always requeued): so under a 50-minute limit the last 10 minutes count as a time-out, and under 10 minutes
every signal does. A job that submitit cannot requeue any more ends with its run interrupted;
`--resubmit-failed` submits failed runs again, and a plain resubmit the runs that have not ended.

With `--cluster local` the jobs are processes on this machine (submitit's local executor), for trying a study's
jobs without a cluster; that executor starts every job at once and has no job dependency, so the report job
waits for the run jobs' processes itself.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from reslab import ReslabError, layout
from reslab.config import from_dict, to_dict, validate
from reslab.engine import runs
from reslab.engine.lock import pid_alive
from reslab.engine.summary import read_summary
from reslab.engine.trainer import train
from reslab.study.spec import StudySpec, open_study, run_status
from reslab.study.status import overall_line, study_status

ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ReslabError("--launcher submitit needs the submitit package: pip install -e \".[slurm]\"") from None
    return submitit


class TrainJob:
    """One run of a study as a job: start it (or resume its directory), and hand a SIGUSR2 stop to submitit.

    A class, not a function: submitit requeues a job whose callable has a `checkpoint` method (the same call
    again, i.e. start-or-resume of the same run)."""

    def __call__(self, cfg: dict, study_dir: str, name: str) -> str:
        run_dir = layout.study_run_dir(study_dir, name)
        if run_status(run_dir) == "missing":
            train(validate(from_dict(cfg)), runs_dir=run_dir.parent, run_name=name, quiet=True)
        else:
            train(resume=run_dir, quiet=True)
        summary = read_summary(run_dir)
        if summary.status == "interrupted" and summary.stopped_by == "SIGUSR2":
            signal.raise_signal(signal.SIGUSR2)  # submitit's handler again: checkpoint() below, then requeue
        return summary.status

    def checkpoint(self, *args):
        return import_submitit().helpers.DelayedSubmission(self, *args)


class ReportJob:
    """The study's report once its runs have ended: `reslab report STUDY` (the report layer is above this one).
    `wait_pids`: the local executor's run jobs (processes on this machine) to wait for; SLURM's dependency
    (afterany) does the waiting on a cluster."""

    def __call__(self, study_dir: str, wait_pids: list[int]) -> str:
        while any(pid_alive(p) for p in wait_pids):
            time.sleep(2.0)
        proc = subprocess.run([sys.executable, "-m", "reslab", "report", study_dir], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"reslab report {study_dir} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip()


def check_options(lc, n_runs: int) -> None:
    """Launcher settings that cannot work, refused before anything is submitted or written."""
    if lc.gpus_per_run > 1:
        raise ReslabError(f"--gpus-per-run {lc.gpus_per_run}: the submitit launcher runs one process per run; use "
                          f"--gpus-per-run 1 (or 0 on CPU), or train a run on N GPUs with reslab train --nproc N")
    if lc.cluster == "local" and 0 < lc.max_parallel < n_runs:
        raise ReslabError(f"--max-parallel {lc.max_parallel}: submitit's local executor starts all {n_runs} jobs at "
                          f"once; pass --max-parallel 0 (all), or use --launcher local")
    for item in lc.slurm_extra:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ReslabError(f"--slurm-extra {item!r} is not KEY=VALUE (e.g. --slurm-extra account=myproj)")


def make_executor(lc, folder: Path, n_jobs: int):
    """submitit's executor with every setting explicit (its local defaults: a 2-minute limit, unbounded jobs)."""
    submitit = import_submitit()
    ex = submitit.AutoExecutor(folder=folder, cluster=lc.cluster, slurm_max_num_timeout=lc.max_requeues,
                               local_max_num_timeout=lc.max_requeues)
    ex.update_parameters(name="reslab", timeout_min=lc.timeout_min, gpus_per_node=lc.gpus_per_run,
                         cpus_per_task=lc.cpus_per_run)
    if lc.cluster == "slurm":
        ex.update_parameters(slurm_partition=lc.partition, slurm_array_parallelism=lc.max_parallel or n_jobs,
                             slurm_additional_parameters=dict(kv.split("=", 1) for kv in lc.slurm_extra))
    return ex


def active_jobs(study_dir: Path) -> list[str]:
    """Ids of the study's stored jobs that are pending or running."""
    return [j["job"] for j in job_states(study_dir).values() if j["state"] in ACTIVE]


def job_states(study_dir: Path) -> dict[str, dict]:
    """{run name (or "report"): {"job": id, "state": SLURM-style state, "error": last error line}} of the jobs in
    STUDY/jobs.json ({} if none were submitted). Reads only (sacct on a cluster, the processes locally)."""
    f = Path(study_dir) / layout.JOBS_FILE
    if not f.exists():
        return {}
    stored = runs.read_json(f)
    ids = {**stored["runs"], **({"report": stored["report"]} if stored["report"] else {})}
    if stored["cluster"] == "slurm":  # one sacct call for every job
        watcher = import_submitit().SlurmJob.watcher
        for job_id in ids.values():
            watcher.register_job(job_id)
        watcher.update()
    return {name: job_state(stored, job_id) for name, job_id in ids.items()}


def job_state(stored: dict, job_id: str) -> dict:
    submitit = import_submitit()
    if stored["cluster"] == "local":
        job = submitit.LocalJob(stored["folder"], job_id)
        done = job.paths.result_pickle.exists() and submitit.core.utils.pickle_load(job.paths.result_pickle)[0]
        state = "RUNNING" if pid_alive(int(job_id)) else ("COMPLETED" if done == "success" else "FAILED")
    else:
        job = submitit.SlurmJob(stored["folder"], job_id)
        state = (job.watcher.get_state(job_id, mode="cache") or "UNKNOWN").split()[0]
    error = None
    if state not in ACTIVE and state != "COMPLETED" and job.paths.stderr.exists():
        lines = [ln for ln in job.paths.stderr.read_text(errors="replace").splitlines() if ln.strip()]
        error = lines[-1][:300] if lines else None
    return {"job": job_id, "state": state, "error": error}


def runs_to_submit(spec: StudySpec, out: Path, resubmit_failed: bool) -> list:
    """The runs that have not ended, or with --resubmit-failed only the failed ones (a failed run, or one whose
    job failed), which resume from their last good checkpoint."""
    if not resubmit_failed:
        return [r for r in spec.runs if run_status(layout.study_run_dir(out, r.name)) not in ("finished", "failed")]
    states = {st.name: st.state for st in study_status(out, job_states(out))}
    return [r for r in spec.runs if states[r.name] == "failed"]


def submit_study(spec: StudySpec, out: Path, lc, resubmit_failed: bool = False, report: bool = True,
                 log=print) -> dict:
    """Submit the study's runs (see the module's docstring), and unless `report` is False the report job after
    them; returns what jobs.json now holds ({} if nothing was left to submit)."""
    import_submitit()
    for r in spec.runs:  # a bad grid cell or launcher setting is refused before anything is submitted or written
        spec.run_config(r)
    out = Path(out)
    planned = runs_to_submit(spec, out, resubmit_failed) if layout.study_runs_dir(out).is_dir() else spec.runs
    check_options(lc, len(planned))
    with open_study(spec, out, warn=log):
        busy = active_jobs(out)
        if busy:
            raise ReslabError(f"study {out} has {len(busy)} job(s) pending or running ({', '.join(busy[:6])}); "
                              f"follow them with reslab study status {out}, or cancel them before submitting again")
        todo = runs_to_submit(spec, out, resubmit_failed)
        if not todo:
            log(f"[study] nothing to submit: every run of {out} has ended" + ("" if resubmit_failed else
                " (--resubmit-failed submits the failed ones again)"))
            return {}
        if lc.timeout_min < 50:
            after = max(0.0, min(0.8 * lc.timeout_min, lc.timeout_min - 10))
            log(f"[study] note: with --timeout-min {lc.timeout_min}, submitit counts a SIGUSR2 after {after:.0f} min "
                f"of a job as a time-out, and requeues a job after at most {lc.max_requeues} time-outs")
        return submit_jobs(spec, out, lc, todo, report, log)


def submit_jobs(spec: StudySpec, out: Path, lc, todo: list, report: bool, log) -> dict:
    """The run array, then the report job; jobs.json records them (written before this returns)."""
    folder = (out / "jobs").resolve()
    ex = make_executor(lc, folder, len(todo))
    cfgs = [to_dict(spec.run_config(r)) for r in todo]
    jobs = ex.map_array(TrainJob(), cfgs, [str(out.resolve())] * len(todo), [r.name for r in todo])
    report_id = submit_report(ex, lc, out, jobs).job_id if report else None
    stored = {"cluster": lc.cluster, "folder": str(folder), "submitted": datetime.now().isoformat(timespec="seconds"),
              "runs": {r.name: j.job_id for r, j in zip(todo, jobs)}, "report": report_id}
    runs.write_json(out / layout.JOBS_FILE, stored)
    log(f"[study] submitted {len(jobs)} run job(s) to {lc.cluster}: "
        + ", ".join(f"{r.name}={j.job_id}" for r, j in zip(todo, jobs))
        + (f"; report job {report_id}" if report else "; no report job (--no-report)"))
    log(f"[study] follow with: reslab study status {out}")
    return stored


def submit_report(ex, lc, out: Path, jobs: list):
    """The job that builds the report once the run jobs have ended (afterany on SLURM; locally it waits for them)."""
    if lc.cluster == "slurm":
        ex.update_parameters(gpus_per_node=0, slurm_dependency=f"afterany:{jobs[0].job_id.split('_')[0]}")
        return ex.submit(ReportJob(), str(out.resolve()), [])
    return ex.submit(ReportJob(), str(out.resolve()), [int(j.job_id) for j in jobs])


def wait_for_jobs(out: Path, log=print, poll_s: float = 10.0) -> bool:
    """`--wait`: print the study's overall line whenever it changes, until no job is pending or running; True if
    every run finished."""
    last = None
    while True:
        jobs = job_states(out)
        line = overall_line(study_status(out, jobs))
        if line != last:
            log(f"[study] {line}")
            last = line
        if not any(j["state"] in ACTIVE for j in jobs.values()):
            return all(st.state == "finished" for st in study_status(out, jobs))
        time.sleep(poll_s)
