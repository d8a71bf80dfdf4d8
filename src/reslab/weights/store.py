"""Published weight files on this machine: found in $RESLAB_WEIGHTS_DIR or torch's hub cache, else downloaded into
the cache; the full sha256 is checked every time a file is used (torch's own check runs only on download)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from reslab import ReslabError
from reslab.data.download import DigestMismatch, DownloadFailed, download_file, file_digest
from reslab.weights.table import Published

ENV_VAR = "RESLAB_WEIGHTS_DIR"
BUNDLED_DIR = Path(__file__).resolve().parent / "published"  # reslab's own weights, shipped with the package


def cache_dir() -> Path:
    """Where downloads go: torch's hub cache (`$TORCH_HOME/hub/checkpoints`), shared with torch.hub."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    env = os.environ.get(ENV_VAR)
    return ([Path(env).expanduser()] if env else []) + [cache_dir()]


def verify(path: Path, p: Published) -> Path:
    got = file_digest(path, "sha256")
    if got != p.sha256:
        raise ReslabError(f"{path} has sha256 {got[:16]}…, not the published {p.sha256[:16]}… of {p.model} "
                          f"({p.source}); delete it (reslab then downloads a good copy) or replace it")
    return path


def fetch(p: Published, timeout: float = 30.0) -> Path:
    """The verified local file of `p`: from a search directory, or downloaded into the cache (nothing partial
    is ever left there). A bundled file is only ever read from the package."""
    if p.bundled:
        if not (BUNDLED_DIR / p.filename).is_file():
            raise ReslabError(f"{p.model} weights ({p.source}) should ship with reslab as {BUNDLED_DIR / p.filename}, "
                              f"which is missing: reinstall reslab from a complete checkout")
        return verify(BUNDLED_DIR / p.filename, p)
    for d in search_dirs():
        if (d / p.filename).is_file():
            return verify(d / p.filename, p)
    try:
        return download_file(p.url, cache_dir() / p.filename, "sha256", p.sha256, timeout)
    except DigestMismatch as e:
        raise ReslabError(f"downloaded {p.url} but its sha256 is {e.digest[:16]}…, not the published "
                          f"{p.sha256[:16]}…; nothing was kept") from None
    except DownloadFailed as e:
        where = " or ".join(str(d) for d in search_dirs())
        raise ReslabError(f"{p.model} weights ({p.source}) are not in {where}, and downloading {p.url} failed "
                          f"({e.reason}); put {p.filename} in ${ENV_VAR} or {cache_dir()}") from None
