"""Downloading one file safely: streamed to a temporary file beside the target and hashed on the way, moved into
place only when its digest is the expected one. A failure of any kind (network, disk, digest) leaves nothing."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path


class DownloadFailed(Exception):
    """The transfer did not complete; `reason` says why (callers word it for their user)."""

    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = reason


class DigestMismatch(Exception):
    """The file arrived but is not the expected one; `digest` is what it hashed to."""

    def __init__(self, digest: str):
        super().__init__(digest)
        self.digest = digest


def file_digest(path: Path, algorithm: str, chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: Path, algorithm: str, expected: str, timeout: float = 30.0) -> Path:
    """`url` -> `dest` if its `algorithm` digest (md5, sha256) is `expected`; raises DownloadFailed or
    DigestMismatch otherwise, with no file left behind."""
    dest = Path(dest)
    made = missing_parents(dest.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest.parent)
    done = False
    try:
        h = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
        if h.hexdigest() != expected:
            raise DigestMismatch(h.hexdigest())
        os.replace(tmp, dest)
        done = True
        return dest
    except DigestMismatch:
        raise
    except Exception as e:  # network errors of every kind end the same way for the user
        raise DownloadFailed(getattr(e, "reason", None) or e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not done:  # the folders this call made for a file that never came
            for d in made:
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()


def missing_parents(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    out = []
    while not folder.exists():
        out.append(folder)
        folder = folder.parent
    return out
