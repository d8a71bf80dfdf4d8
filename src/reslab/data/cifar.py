"""CIFAR-10 on disk: find it, download and md5-verify it, check its structure, read it into uint8 tensors.

Accepted sources, in a data directory DIR (from --data-dir, else $RESLAB_DATA_DIR, else the user cache):
  DIR/cifar-10-python.tar.gz        the official "python version" archive (or any archive with that layout)
  DIR/cifar-10-batches-py/          the same, extracted
  DIR itself, if it is such an archive file or such a folder

The official archive is recognised by its md5. Any other copy is accepted after a structural check (six
batches, 3072 uint8 columns, labels 0-9 for every row, every class equally frequent), so re-packed copies and
small generated test sets in the same format load too. Everything is read once into uint8 tensors; there is
no per-image PIL work anywhere.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reslab import ReslabError
from reslab.data.download import DigestMismatch, DownloadFailed, download_file, file_digest

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFICIAL_TRAIN, OFFICIAL_TEST = 50_000, 10_000
ENV_VAR = "RESLAB_DATA_DIR"

HOW_TO_POINT = (f"put {ARCHIVE_NAME} (or the extracted {FOLDER_NAME}/) in a folder and pass --data-dir DIR "
                f"or set {ENV_VAR}=DIR")


class DataError(ReslabError):
    pass


@dataclass
class Cifar10:
    """The whole data set as uint8 NCHW tensors (N, 3, 32, 32) and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path
    official: bool  # True if the bytes are the official archive (md5 checked)

    classes = CLASSES


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "reslab" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $RESLAB_DATA_DIR, else the user cache dir."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_data_dir()


def find_source(data_dir: Path) -> Path | None:
    """The archive or folder to read inside `data_dir`, or None if there is none."""
    if data_dir.is_file():
        return data_dir
    if (data_dir / TEST_BATCH).is_file():
        return data_dir
    for cand in (data_dir / FOLDER_NAME, data_dir / ARCHIVE_NAME):
        if cand.exists():
            return cand
    return None


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def download(data_dir: Path, url: str = URL, md5: str = ARCHIVE_MD5, timeout: float = 30.0) -> Path:
    """Download the official archive into `data_dir` and verify its md5. A failure leaves no partial file."""
    try:
        return download_file(url, data_dir / ARCHIVE_NAME, "md5", md5, timeout)
    except DigestMismatch as e:
        raise DataError(f"downloaded {url} but its md5 is {e.digest}, expected {md5}; "
                        f"nothing was kept; {HOW_TO_POINT}") from None
    except DownloadFailed as e:
        raise DataError(f"no CIFAR-10 in {data_dir} and downloading {url} failed ({e.reason}); "
                        f"{HOW_TO_POINT}") from None


def _read_members(source: Path) -> dict[str, bytes]:
    """Raw bytes of the six batch files, from an archive or a folder."""
    names = TRAIN_BATCHES + (TEST_BATCH,)
    found: dict[str, bytes] = {}
    if source.is_dir():
        for n in names:
            p = source / n
            if p.is_file():
                found[n] = p.read_bytes()
    else:
        try:
            with tarfile.open(source, "r:*") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if base in names and member.isfile():
                        found[base] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise DataError(f"{source} is not a readable CIFAR-10 archive ({type(e).__name__}: "
                            f"{(str(e).splitlines() or [''])[0]}); "
                            f"expected the python-version {ARCHIVE_NAME}") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}; a CIFAR-10 python-version copy has "
                        f"{', '.join(names)}")
    return found


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = pickle.load(io.BytesIO(raw), encoding="bytes")
        data = d[b"data"] if b"data" in d else d["data"]
        labels = d[b"labels"] if b"labels" in d else d["labels"]
    except Exception as e:
        raise DataError(f"{where} is not a CIFAR-10 batch pickle ({type(e).__name__}: {e})") from None
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: data has dtype {data.dtype} and shape {data.shape}; expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    return data, labels.astype(np.int64)


def _check_balance(labels: np.ndarray, where: str) -> None:
    counts = np.bincount(labels, minlength=10)
    if counts.min() != counts.max():
        raise DataError(f"{where}: images per class {counts.tolist()}; CIFAR-10 has the same count for every class")


def read_cifar10(source: Path) -> Cifar10:
    """Read and structurally check a CIFAR-10 python-version archive or folder."""
    raw = _read_members(source)
    parts = [_parse_batch(raw[n], f"{source}:{n}") for n in TRAIN_BATCHES]
    rows = {p[0].shape[0] for p in parts}
    if len(rows) != 1:
        raise DataError(f"{source}: training batches have different sizes {sorted(rows)}; expected equal batches")
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _parse_batch(raw[TEST_BATCH], f"{source}:{TEST_BATCH}")
    _check_balance(train_y, f"{source} (training batches)")
    _check_balance(test_y, f"{source}:{TEST_BATCH}")
    official = source.is_file() and md5sum(source) == ARCHIVE_MD5

    def as_tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 3, 32, 32)))

    return Cifar10(as_tensor(train_x), torch.from_numpy(train_y), as_tensor(test_x), torch.from_numpy(test_y),
                   source=source, official=official)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, allow_download: bool = True) -> Cifar10:
    """Find CIFAR-10 (downloading the official archive if nothing is there) and read it."""
    explicit = data_dir is not None
    root = resolve_data_dir(data_dir)
    if explicit and not root.exists():
        raise DataError(f"--data-dir {root} does not exist; {HOW_TO_POINT}")
    source = find_source(root)
    if source is None:
        if not allow_download:
            raise DataError(f"no CIFAR-10 in {root}; {HOW_TO_POINT}")
        source = download(root)
    return read_cifar10(source)
