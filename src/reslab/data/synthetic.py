"""Small generated data sets in the exact on-disk format of CIFAR-10 (for tests, demos and benchmarks).

Each class gets its own mean colour and a class-specific stripe, plus noise, so even a tiny net can learn it
within a few iterations — enough to tell a working trainer from a broken one.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from reslab.data.cifar import ARCHIVE_NAME, CIFAR100, CLASSES, FOLDER_NAME, TEST_BATCH, TRAIN_BATCHES


def make_images(n: int, rng: np.random.Generator, labels: np.ndarray, base: np.ndarray) -> np.ndarray:
    img = np.empty((n, 3, 32, 32), dtype=np.int64)
    img[:] = base[labels][:, :, None, None]
    for c in range(base.shape[0]):
        sel = labels == c
        img[sel, c % 3, (c * 3) % 32: (c * 3) % 32 + 4, :] += 60  # a class-specific stripe
    img += rng.integers(-30, 31, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)


def _batch(data: np.ndarray, labels: np.ndarray, label: str) -> bytes:
    d = {b"batch_label": label.encode(), b"labels": labels.tolist(), b"data": data,
         b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}
    return pickle.dumps(d, protocol=2)


def write_fake_cifar(path: str | Path, per_batch: int = 100, test: int = 100, seed: int = 0,
                     as_archive: bool = True) -> Path:
    """Write a CIFAR-10-format data set with `per_batch` images in each of the 5 training batches and `test`
    test images (both multiples of 10, class-balanced). Returns the archive or folder path."""
    if per_batch % 2 or (5 * per_batch) % 10 or test % 10:
        raise ValueError("per_batch*5 and test must be multiples of 10")
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(10), 5 * per_batch // 10))
    test_labels = rng.permutation(np.repeat(np.arange(10), test // 10))
    base = rng.integers(40, 215, size=(10, 3), dtype=np.int64)  # one colour per class, shared by all splits
    files = {}
    for i, name in enumerate(TRAIN_BATCHES):
        lab = train_labels[i * per_batch:(i + 1) * per_batch]
        files[name] = _batch(make_images(per_batch, rng, lab, base), lab, f"training batch {i + 1} of 5")
    files[TEST_BATCH] = _batch(make_images(test, rng, test_labels, base), test_labels, "testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in CLASSES],
                                          b"num_cases_per_batch": per_batch, b"num_vis": 3072}, protocol=2)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if as_archive:
        return write_archive(path / ARCHIVE_NAME, FOLDER_NAME, files)
    folder = path / FOLDER_NAME
    folder.mkdir(exist_ok=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def write_fake_cifar100(path: str | Path, train: int = 1000, test: int = 200, seed: int = 0,
                        labels_hook=None) -> Path:
    """Write a CIFAR-100-format archive (`cifar-100-python/{train,test,meta}`, fine and coarse labels) with `train`
    and `test` images, both multiples of 100 (class-balanced). `labels_hook(labels) -> labels` may corrupt the
    training labels, to test the structural checks. Returns the archive path."""
    if train % 100 or test % 100:
        raise ValueError("train and test must be multiples of 100")
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(100), train // 100))
    test_labels = rng.permutation(np.repeat(np.arange(100), test // 100))
    base = rng.integers(40, 215, size=(100, 3), dtype=np.int64)
    if labels_hook is not None:
        train_labels = labels_hook(train_labels)

    def split(labels, name):
        return pickle.dumps({b"filenames": [f"{i}.png".encode() for i in range(len(labels))], b"batch_label": name,
                             b"fine_labels": labels.tolist(), b"coarse_labels": (np.asarray(labels) // 5).tolist(),
                             b"data": make_images(len(labels), rng, np.clip(labels, 0, 99), base)}, protocol=2)

    files = {"train": split(train_labels, b"training batch 1 of 1"),
             "test": split(test_labels, b"testing batch 1 of 1"),
             "meta": pickle.dumps({b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]}, protocol=2)}
    Path(path).mkdir(parents=True, exist_ok=True)
    return write_archive(Path(path) / CIFAR100.archive, CIFAR100.folder, files)


def write_archive(out: Path, folder: str, files: dict[str, bytes]) -> Path:
    """A .tar.gz holding `folder/<name>` for every file, as the official archives are laid out."""
    with tarfile.open(out, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return out
