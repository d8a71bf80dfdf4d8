"""One writer per run directory and per study directory: an `fcntl.flock` on DIR/.lock, holder recorded inside.

A writer (`reslab train`, a study's runner, a launcher's submit) takes the lock before it writes anything and
holds it to the end. A second writer retries for a moment (the holder may be just finishing), then gets one
line naming the holder and exit code 2, having changed nothing. The kernel drops an flock when its process dies,
even on kill -9, so a lock is never stuck; the record a dead holder leaves in the file (a clean release empties
it) is how the next writer knows to say that it takes the lock over, naming the dead pid. Readers (`reslab
eval`, `report`, `study status`) never lock: `holder` only reads the record.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Literal

from reslab import ReslabError, layout

RETRY_S = 2.0


class DirLock:
    """A held lock; `release` empties the record and unlocks (also on leaving a `with` block)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd: int | None = fd  # None once released

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc) -> Literal[False]:
        self.release()
        return False


def acquire(directory: Path, what: str, warn: Callable[[str], None], wait: float = RETRY_S) -> DirLock:
    """Lock `directory` (which must exist) for writing; `what` names it in messages ("run", "study")."""
    path = Path(directory) / layout.LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            rec = read_record(path)
            os.close(fd)
            raise ReslabError(f"{what} {directory} is being written by pid {rec.get('pid', '?')} on "
                              f"{rec.get('host', '?')}; wait for it or stop it") from None
    left = read_record(path)
    if left:  # a holder that did not release cleanly: killed, or crashed
        state = {False: "no longer running", None: "not holding it", True: "alive but not holding it"}[alive(left)]
        warn(f"warning: taking over the lock of {what} {directory} left by pid {left.get('pid')} on "
             f"{left.get('host')} ({state})")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    os.fsync(fd)
    return DirLock(path, fd)


def read_record(path: Path) -> dict:
    """The holder recorded in a lock file ({} when empty, missing or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def holder(directory: Path) -> dict:
    """Who is writing `directory`, for readers: {pid, host, since, command, alive}, or {} when nobody is. Never
    locks. `alive` is known only on the holder's own host (None elsewhere)."""
    rec = read_record(Path(directory) / layout.LOCK_FILE)
    return {**rec, "alive": alive(rec)} if rec else {}


def alive(rec: dict) -> bool | None:
    """Whether the recorded process still runs (None: it ran on another host, so we cannot tell)."""
    if rec.get("host") != socket.gethostname():
        return None
    try:
        return pid_alive(int(rec["pid"]))
    except (KeyError, ValueError, TypeError):
        return True


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (an exited child not yet reaped by its parent does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
