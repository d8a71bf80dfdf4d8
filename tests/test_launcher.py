"""The submitit launcher (reslab/launchers/slurm.py): a study's runs as jobs, requeued on SLURM's SIGUSR2 and
resumed exactly; the sbatch script it generates, checked with stand-in sbatch/srun/sacct on PATH; one submission
at a time; `reslab study status`."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.engine import lock, train
from reslab.weights.files import load_checkpoint
from reslab.engine.runs import read_metrics
from reslab.study import plan_degradation

pytest.importorskip("submitit", reason="submitit is not installed (pip install -e '.[slurm]')")

TINY = ["--set", "data.val_size=50", "--set", "data.val_subset=null", "--set", "data.test_subset=40",
        "--set", "train.batch_size=25", "--set", "optim.warmup=none", "--set", "data.train_subset=null"]
TIMED = ("seconds", "images_per_s", "wall_seconds")


def status_json(out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "reslab", "study", "status", str(out), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMED} for r in rows]


def test_local_executor_jobs_requeue_on_sigusr2_and_resume_bit_identically(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' thread count; the reference below uses the same
    out = tmp_path / "study"
    schedule = ["--set", "train.epochs=null", "--set", "train.iterations=240", "--set", "train.eval_every=60"]
    cmd = [sys.executable, "-m", "reslab", "study", "degradation", "--depths", "8", "--data-dir", str(fake_dir),
           "--out", str(out), "--quiet", *TINY, *schedule, "--launcher", "submitit", "--cluster", "local",
           "--gpus-per-run", "0", "--cpus-per-run", "1", "--timeout-min", "20"]
    t0 = time.time()
    with open(tmp_path / "submit.out", "w") as f:  # a file, not a pipe: the jobs' processes outlive the command
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=120).returncode
    printed = (tmp_path / "submit.out").read_text()
    assert code == 0, printed
    assert time.time() - t0 < 60 and re.search(r"submitted 2 run job\(s\) to local: plain8-s0=\d+, resnet8-s0=\d+; "
                                                r"report job \d+", printed), printed
    jobs = json.loads((out / "jobs.json").read_text())
    run = out / "runs" / "plain8-s0"
    deadline = time.time() + 180
    while time.time() < deadline and not (run / "checkpoints" / "ckpt-00000060.pt.sha256").exists():
        time.sleep(0.02)
    task = lock.holder(run)["pid"]
    assert str(task) != jobs["runs"]["plain8-s0"]  # the task's process, not submitit's local controller
    os.kill(task, signal.SIGUSR2)  # what SLURM does ahead of a time limit or a preemption
    while time.time() < deadline and any(j["state"] == "RUNNING" for j in status_json(out)["jobs"].values()):
        time.sleep(1.0)
    final = status_json(out)
    assert [r["state"] for r in final["runs"]] == ["finished", "finished"], final
    assert {j["state"] for j in final["jobs"].values()} == {"COMPLETED"}, final["jobs"]
    assert final["overall"].startswith("2 of 2 runs ended (2 finished)")
    log = (run / "train.log").read_text()
    stopped = int(re.search(r"stopped at iteration (\d+)/240", log).group(1))
    assert f"resuming {run} at iteration {stopped} from ckpt-{stopped:08d}.pt" in log
    assert stopped % 60 != 0, "the checkpoint at the signal's step boundary, not an evaluation's, was resumed"
    assert (out / "report" / "report.md").is_file()  # the report job ran once the runs had ended
    # an uninterrupted run of the same config, with the same thread count
    spec = plan_degradation("quick", (8,), overrides=[s for s in TINY + schedule if s != "--set"],
                            data_dir=str(fake_dir))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = train(spec.run_config(spec.runs[0]), runs_dir=tmp_path / "ref", run_name="plain8-s0", quiet=True)
    finally:
        torch.set_num_threads(threads)
    for name in ("metrics.csv", "train_log.csv"):
        assert untimed(read_metrics(run / name)) == untimed(read_metrics(ref / name)), name
    a = load_checkpoint(run / "checkpoints" / "ckpt-00000240.pt")["model_state"]
    b = load_checkpoint(ref / "checkpoints" / "ckpt-00000240.pt")["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


STAND_INS = {
    "sbatch": """#!/bin/bash
n=$(ls "$STANDIN_DIR"/sbatch-*.sh 2>/dev/null | wc -l)
id=$((4242 + n))
cp "$1" "$STANDIN_DIR/sbatch-$id.sh"
echo "Submitted batch job $id"
""",
    "srun": """#!/bin/bash
echo "srun $*" >> "$STANDIN_DIR/srun.log"
""",
    "sacct": """#!/bin/bash
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
  if [ "$1" = "-j" ]; then shift; for i in 0 1 2 3; do echo "${1}_$i|$(cat "$STANDIN_DIR/state")|node1"; done
    echo "$1|$(cat "$STANDIN_DIR/state")|node1"; fi
  shift
done
""",
}


@pytest.fixture
def stand_in_slurm(tmp_path, monkeypatch):
    """sbatch (keeps each script, answers a job id), srun and sacct (answers the state in STANDIN_DIR/state)."""
    bin_dir, rec = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    rec.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (rec / "state").write_text("PENDING")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_DIR", str(rec))
    return rec


def test_slurm_sbatch_script_then_one_submission_at_a_time(fake_dir, tmp_path, stand_in_slurm, capsys):
    out = tmp_path / "study"
    cmd = ["study", "degradation", "--depths", "8", "--seeds", "2", "--data-dir", str(fake_dir), "--out", str(out),
           *TINY, "--launcher", "submitit", "--partition", "gpu", "--gpus-per-run", "1", "--cpus-per-run", "6",
           "--timeout-min", "120", "--max-parallel", "3", "--slurm-extra", "account=proj"]
    assert main(cmd) == 0
    printed = capsys.readouterr().out
    assert ("submitted 4 run job(s) to slurm: plain8-s0=4242_0, plain8-s1=4242_1, resnet8-s0=4242_2, "
            "resnet8-s1=4242_3; report job 4243") in printed
    script = (stand_in_slurm / "sbatch-4242.sh").read_text()
    for flag in ("--array=0-3%3", "--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=6", "--time=120",
                 "--signal=USR2@90", "--account=proj", "--open-mode=append"):
        assert f"#SBATCH {flag}\n" in script, flag
    subprocess.run(["bash", str(stand_in_slurm / "sbatch-4242.sh")], check=True, timeout=30)  # srun: a stand-in
    assert (stand_in_slurm / "srun.log").read_text().strip().endswith(f"-m submitit.core._submit {out / 'jobs'}")
    report = (stand_in_slurm / "sbatch-4243.sh").read_text()
    assert "#SBATCH --dependency=afterany:4242\n" in report and "--array" not in report
    stored = json.loads((out / "jobs.json").read_text())
    assert stored["runs"]["resnet8-s1"] == "4242_3" and stored["report"] == "4243"
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())  # nothing trained here
    # status while the jobs wait
    assert main(["study", "status", str(out)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"plain8-s0 +pending .*job 4242_0 \(pending\)", table)
    # a second submission while they are pending is refused in one line, changing nothing
    before = (out / "jobs.json").read_text()
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"reslab: error: study {out} has 5 job(s) pending or running (4242_0, 4242_1, 4242_2, 4242_3, "
                   f"4243); follow them with reslab study status {out}, or cancel them before submitting again")
    assert (out / "jobs.json").read_text() == before and len(list(stand_in_slurm.glob("sbatch-*.sh"))) == 2
    # the jobs failed: --resubmit-failed submits the failed runs again
    (stand_in_slurm / "state").write_text("FAILED")
    assert main(["study", "status", str(out), "--json"]) == 0
    assert {r["state"] for r in json.loads(capsys.readouterr().out)["runs"]} == {"failed"}
    assert main(cmd + ["--resubmit-failed"]) == 0
    assert "submitted 4 run job(s) to slurm" in capsys.readouterr().out
    assert "#SBATCH --array=0-3%3\n" in (stand_in_slurm / "sbatch-4244.sh").read_text()


@pytest.mark.parametrize("flags, needle", [
    (["--gpus-per-run", "2"], "--gpus-per-run 2: the submitit launcher runs one process per run"),
    (["--cluster", "local", "--max-parallel", "1"], "--max-parallel 1: submitit's local executor starts all 2 jobs"),
    (["--slurm-extra", "noequals"], "--slurm-extra 'noequals' is not KEY=VALUE"),
    (["--devices", "cpu,cpu"], "--devices is for the local launcher"),
])
def test_launcher_settings_that_cannot_work_are_refused_before_anything_is_written(fake_dir, tmp_path, capsys,
                                                                                   stand_in_slurm, flags, needle):
    out = tmp_path / "study"
    code = main(["study", "degradation", "--depths", "8", "--data-dir", str(fake_dir), "--out", str(out), *TINY,
                 "--launcher", "submitit", *flags])
    assert code == 2 and needle in capsys.readouterr().err
    assert not (out / "jobs.json").exists() and not list(stand_in_slurm.glob("sbatch-*.sh"))


def test_launcher_settings_do_not_make_another_study(fake_dir, tmp_path):
    from reslab.study.spec import check_study, open_study
    spec = plan_degradation("quick", (8,), overrides=[s for s in TINY if s != "--set"], data_dir=str(fake_dir))
    open_study(spec, tmp_path / "s").release()
    other = plan_degradation("quick", (8,), overrides=[s for s in TINY if s != "--set"] + [
        "launcher.name=submitit", "launcher.partition=gpu", "train.loggers=[mlflow]"], data_dir=str(fake_dir))
    assert check_study(other, tmp_path / "s")
