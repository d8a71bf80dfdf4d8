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
from collections.abc import Iterator
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


@dataclass(frozen=True)
class DatasetSpec:
    """What distinguishes CIFAR-10 from CIFAR-100 on disk (the python versions of both)."""

    name: str                      # the data.dataset value
    title: str
    url: str
    archive: str                   # the official archive's file name
    md5: str                       # and its md5
    folder: str                    # what it unpacks to
    train_members: tuple[str, ...]
    test_member: str
    label_key: bytes               # b"labels" | b"fine_labels"
    num_classes: int
    meta_member: str | None = None  # read for the class names (None: `classes` is fixed)
    names_key: bytes = b""
    classes: tuple[str, ...] = ()

    def how_to_point(self) -> str:
        return (f"put {self.archive} (or the extracted {self.folder}/) in a folder and pass --data-dir DIR "
                f"(data.dir in a config or the Python API) or set {ENV_VAR}=DIR")


CIFAR10 = DatasetSpec("cifar10", "CIFAR-10", URL, ARCHIVE_NAME, ARCHIVE_MD5, FOLDER_NAME, TRAIN_BATCHES, TEST_BATCH,
                      b"labels", 10, classes=CLASSES)
CIFAR100 = DatasetSpec("cifar100", "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                       "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
                       ("train",), "test", b"fine_labels", 100, meta_member="meta", names_key=b"fine_label_names")
DATASETS = {s.name: s for s in (CIFAR10, CIFAR100)}
HOW_TO_POINT = CIFAR10.how_to_point()


class DataError(ReslabError):
    pass


@dataclass
class CifarData:
    """A whole data set (CIFAR-10 or CIFAR-100) as uint8 NCHW tensors (N, 3, 32, 32) and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path
    official: bool  # True if the bytes are the official archive (md5 checked)
    classes: tuple[str, ...] = CLASSES
    dataset: str = "cifar10"


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


def find_source(data_dir: Path, spec: DatasetSpec = CIFAR10) -> Path | None:
    """The archive or folder to read inside `data_dir`, or None if there is none."""
    if data_dir.is_file():
        return data_dir
    if (data_dir / spec.test_member).is_file():
        return data_dir
    for cand in (data_dir / spec.folder, data_dir / spec.archive):
        if cand.exists():
            return cand
    return None


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def download(data_dir: Path, spec: DatasetSpec = CIFAR10, timeout: float = 30.0) -> Path:
    """Download the official archive into `data_dir` and verify its md5. A failure leaves no partial file."""
    try:
        return download_file(spec.url, data_dir / spec.archive, "md5", spec.md5, timeout)
    except DigestMismatch as e:
        raise DataError(f"downloaded {spec.url} but its md5 is {e.digest}, expected {spec.md5}; "
                        f"nothing was kept; {spec.how_to_point()}") from None
    except DownloadFailed as e:
        raise DataError(f"no {spec.title} in {data_dir} and downloading {spec.url} failed ({e.reason}); "
                        f"{spec.how_to_point()}") from None


def _member_names(spec: DatasetSpec) -> tuple[str, ...]:
    return spec.train_members + (spec.test_member,) + ((spec.meta_member,) if spec.meta_member else ())


def _members(source: Path, spec: DatasetSpec) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of each batch (and meta) file of an archive or folder, one file at a time: the whole
    data set's raw bytes are never held at once."""
    names = _member_names(spec)
    if source.is_dir():
        yield from ((n, (source / n).read_bytes()) for n in names if (source / n).is_file())
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if base in names and member.isfile():
                    yield base, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise DataError(f"{source} is not a readable {spec.title} archive ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]}); "
                        f"expected the python-version {spec.archive}") from None


def _check_complete(source: Path, spec: DatasetSpec, found) -> None:
    missing = [n for n in _member_names(spec) if n not in found]
    if missing:
        raise DataError(f"{source} lacks {', '.join(missing)}; a {spec.title} python-version copy has "
                        f"{', '.join(_member_names(spec))}")


def _unpickle(raw: bytes, where: str, spec: DatasetSpec) -> dict:
    try:
        return pickle.load(io.BytesIO(raw), encoding="bytes")
    except Exception as e:
        raise DataError(f"{where} is not a {spec.title} pickle ({type(e).__name__}: {e})") from None


def _parse_batch(raw: bytes, where: str, spec: DatasetSpec = CIFAR10) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(raw, where, spec)
    key = spec.label_key
    try:
        data = d[b"data"] if b"data" in d else d["data"]
        labels = d[key] if key in d else d[key.decode()]
    except (KeyError, TypeError) as e:
        raise DataError(f"{where} is not a {spec.title} batch (no {e} in it)") from None
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: data has dtype {data.dtype} and shape {data.shape}; expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{where}: {labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > spec.num_classes - 1):
        raise DataError(f"{where}: labels range {labels.min()}..{labels.max()}; expected 0..{spec.num_classes - 1}")
    return data, labels.astype(np.int64)


def _check_balance(labels: np.ndarray, where: str, spec: DatasetSpec = CIFAR10) -> None:
    counts = np.bincount(labels, minlength=spec.num_classes)
    if counts.min() != counts.max():
        shown = counts.tolist() if spec.num_classes <= 10 else f"from {counts.min()} to {counts.max()}"
        raise DataError(f"{where}: images per class {shown}; {spec.title} has the same count for every class")


def _class_names(raw: bytes, source: Path, spec: DatasetSpec) -> tuple[str, ...]:
    meta = _unpickle(raw, f"{source}:{spec.meta_member}", spec)
    names = meta.get(spec.names_key) or meta.get(spec.names_key.decode()) or []
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(names) != spec.num_classes:
        raise DataError(f"{source}:{spec.meta_member} names {len(names)} classes; {spec.title} has {spec.num_classes}")
    return names


class _TrainingSet:
    """The training batches, copied as each is read into one array of the whole training set (so the set is
    never held twice, as batches and as their concatenation); every batch must have the same size."""

    def __init__(self, source: Path, spec: DatasetSpec):
        self.source, self.members = source, spec.train_members
        self.images = self.labels = None

    def add(self, name: str, x: np.ndarray, y: np.ndarray) -> None:
        rows = x.shape[0]
        if self.images is None:
            self.images = np.empty((len(self.members) * rows, x.shape[1]), np.uint8)
            self.labels = np.empty(len(self.members) * rows, np.int64)
        elif rows * len(self.members) != len(self.labels):
            raise DataError(f"{self.source}: training batches have different sizes "
                            f"{sorted({rows, len(self.labels) // len(self.members)})}; expected equal batches")
        i = self.members.index(name) * rows
        self.images[i:i + rows], self.labels[i:i + rows] = x, y


def read_dataset(source: Path, spec: DatasetSpec = CIFAR10) -> CifarData:
    """Read and structurally check a python-version archive or folder of `spec` (CIFAR-10 or CIFAR-100)."""
    train, test, classes, found = _TrainingSet(source, spec), None, spec.classes, set()
    for name, raw in _members(source, spec):
        found.add(name)
        if name == spec.meta_member:
            classes = _class_names(raw, source, spec)
        elif name == spec.test_member:
            test = _parse_batch(raw, f"{source}:{name}", spec)
        else:
            train.add(name, *_parse_batch(raw, f"{source}:{name}", spec))
        del raw  # before the next file is read
    _check_complete(source, spec, found)
    (train_x, train_y), (test_x, test_y) = (train.images, train.labels), test
    _check_balance(train_y, f"{source} (training {'batches' if len(spec.train_members) > 1 else 'set'})", spec)
    _check_balance(test_y, f"{source}:{spec.test_member}", spec)
    official = source.is_file() and md5sum(source) == spec.md5

    def as_tensor(x):
        return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 3, 32, 32)))

    return CifarData(as_tensor(train_x), torch.from_numpy(train_y), as_tensor(test_x), torch.from_numpy(test_y),
                     source=source, official=official, classes=classes, dataset=spec.name)


def read_cifar10(source: Path) -> CifarData:
    return read_dataset(source, CIFAR10)


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"data.dataset={name!r} is not allowed; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(dataset: str = "cifar10", data_dir: str | os.PathLike | None = None, *,
                 allow_download: bool = True) -> CifarData:
    """Find `dataset` (cifar10 | cifar100) in `data_dir` (downloading the official archive if nothing is there)
    and read it."""
    spec = dataset_spec(dataset)
    explicit = data_dir is not None
    root = resolve_data_dir(data_dir)
    if explicit and not root.exists():
        raise DataError(f"--data-dir {root} does not exist; {spec.how_to_point()}")
    source = find_source(root, spec)
    if source is None:
        if not allow_download:
            raise DataError(f"no {spec.title} in {root}; {spec.how_to_point()}")
        source = download(root, spec)
    return read_dataset(source, spec)


def load_cifar10(data_dir: str | os.PathLike | None = None, *, allow_download: bool = True) -> CifarData:
    """Find CIFAR-10 (downloading the official archive if nothing is there) and read it."""
    return load_dataset("cifar10", data_dir, allow_download=allow_download)
