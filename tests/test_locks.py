"""One writer per run and per study directory (engine/lock.py): a second writer is refused in one line, exit 2,
having changed nothing; a lock left by a killed process is taken over with a warning naming it; readers never
lock."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reslab import ReslabError, layout
from reslab.engine import lock, train

TINY_STUDY = ["--set", "data.val_size=50", "--set", "data.val_subset=null", "--set", "data.test_subset=40",
              "--set", "train.batch_size=25", "--set", "train.epochs=null", "--set", "train.iterations=20",
              "--set", "train.eval_every=10", "--set", "optim.warmup=none", "--set", "data.train_subset=null"]


def reslab(*args) -> list[str]:
    return [sys.executable, "-m", "reslab", *map(str, args)]


def hashes(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def wait_for_holder(d: Path, pid: int, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lock.holder(d).get("pid") == pid:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took the lock of {d}")


def second_writer_is_refused(first: subprocess.Popen, cmd: list[str], d: Path, what: str, reader: list[str]) -> None:
    """With `first` frozen while it holds the lock of `d`, the same command `cmd` exits 2 with the one line and the
    reader `reader` works, neither changing any file; then `first` goes on to the end."""
    first.send_signal(signal.SIGSTOP)  # frozen while it holds the lock: only the others could change files
    try:
        before = hashes(d)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert hashes(d) == before
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.strip() == (f"reslab: error: {what} {d} is being written by pid {first.pid} on "
                                         f"{socket.gethostname()}; wait for it or stop it")
        read = subprocess.run(reader, capture_output=True, text=True, timeout=120)  # readers never lock
        assert read.returncode == 0, read.stderr
        assert hashes(d) == before
    finally:
        first.send_signal(signal.SIGCONT)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out


def stopped_run(tiny_cfg, tmp_path, iterations=40) -> Path:
    """A run stopped (checkpointed) after 2 of `iterations` steps, ready to resume."""
    return train(tiny_cfg(**{"train.iterations": iterations, "train.eval_every": 20}), runs_dir=tmp_path,
                 quiet=True, stop_after=2)


def test_a_second_lock_is_refused_in_one_line_and_a_released_lock_is_free(tmp_path):
    warnings = []
    held = lock.acquire(tmp_path, "run", warnings.append)
    rec = json.loads((tmp_path / layout.LOCK_FILE).read_text())
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    with pytest.raises(ReslabError) as e:
        lock.acquire(tmp_path, "run", warnings.append, wait=0.3)
    assert str(e.value) == (f"run {tmp_path} is being written by pid {os.getpid()} on {socket.gethostname()}; "
                            f"wait for it or stop it")
    held.release()
    assert (tmp_path / layout.LOCK_FILE).read_text() == "" and lock.holder(tmp_path) == {}
    with lock.acquire(tmp_path, "run", warnings.append):
        assert lock.holder(tmp_path)["alive"] is True
    assert warnings == []


def test_a_record_left_by_a_dead_process_is_taken_over_with_a_warning_naming_it(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / layout.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert lock.holder(tmp_path)["alive"] is False
    warnings = []
    with lock.acquire(tmp_path, "study", warnings.append):
        pass
    assert warnings == [f"warning: taking over the lock of study {tmp_path} left by pid {dead.pid} on "
                        f"{socket.gethostname()} (no longer running)"]


def test_a_writer_finding_the_lock_briefly_busy_waits_for_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from reslab.engine import lock; "
                               f"l = lock.acquire(__import__('pathlib').Path({str(tmp_path)!r}), 'run', print); "
                               "time.sleep(0.8); l.release()"])
    wait_for_holder(tmp_path, holder.pid, timeout=30)
    with lock.acquire(tmp_path, "run", print, wait=10):
        assert lock.holder(tmp_path)["pid"] == os.getpid()
    holder.wait()


def test_two_resumes_of_one_run_exactly_one_trains_the_other_exits_2_touching_nothing(tiny_cfg, tmp_path):
    run = stopped_run(tiny_cfg, tmp_path / "runs")
    cmd = reslab("train", "--resume", run, "--quiet")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_holder(run, first.pid)
    second_writer_is_refused(first, cmd, run, "run", reslab("eval", run, "--json", "--no-csv"))
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert (run / layout.LOCK_FILE).read_text() == ""


def test_a_lock_left_by_kill_9_is_taken_over_with_a_warning_naming_the_pid(tiny_cfg, tmp_path):
    run = stopped_run(tiny_cfg, tmp_path / "runs")
    victim = subprocess.Popen(reslab("train", "--resume", run, "--quiet"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_for_holder(run, victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    again = subprocess.run(reslab("train", "--resume", run, "--quiet"), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (f"warning: taking over the lock of run {run} left by pid {victim.pid} on {socket.gethostname()} "
            f"(no longer running)") in again.stdout
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_two_study_commands_on_one_directory_the_second_exits_2_touching_nothing(fake_dir, tmp_path):
    out = tmp_path / "study"
    cmd = reslab("study", "degradation", "--depths", "8", "--data-dir", fake_dir, "--out", out, "--quiet",
                 "--no-report", *TINY_STUDY)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_holder(out, first.pid)
    while not (out / "study.json").exists():  # written just after the lock is taken
        time.sleep(0.02)
    second_writer_is_refused(first, cmd, out, "study", reslab("study", "status", out))
    for name in ("plain8-s0", "resnet8-s0"):
        assert json.loads((out / "runs" / name / "summary.json").read_text())["status"] == "finished"
