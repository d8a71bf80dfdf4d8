import dataclasses
import pickle
import tarfile
import urllib.request

import numpy as np
import pytest
import torch

from reslab.data import DataError, Normalizer, augment, load_cifar10, make_splits, read_cifar10
from reslab.data import cifar as cifar_mod
from reslab.data import pipeline as pipeline_mod
from reslab.data.synthetic import write_fake_cifar

from conftest import REAL_ARCHIVE, requires_real_data


def test_reads_archive_and_folder_identically(tmp_path, fake_dir):
    a = load_cifar10(fake_dir)
    folder = write_fake_cifar(tmp_path / "f", per_batch=60, test=60, seed=0, as_archive=False)
    b = load_cifar10(folder)
    assert a.train_images.shape == (300, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.test_images.shape == (60, 3, 32, 32)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not a.official  # generated, not the official byte stream


def test_pixel_layout_is_rrr_ggg_bbb(tmp_path):
    # One row of a CIFAR batch is 1024 R, 1024 G, 1024 B values; check we place them in (3, 32, 32).
    path = write_fake_cifar(tmp_path, per_batch=20, test=10, as_archive=False)
    with open(path / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    data = load_cifar10(path)
    row = d[b"data"][0]
    assert torch.equal(data.train_images[0, 1, 0], torch.from_numpy(row[1024:1056]))
    assert torch.equal(data.train_images[0, 2, 31], torch.from_numpy(row[3072 - 32:]))


def test_data_dir_precedence(monkeypatch, tmp_path, fake_dir):
    monkeypatch.setenv("RESLAB_DATA_DIR", str(fake_dir))
    assert load_cifar10().train_images.shape[0] == 300  # from the env var
    monkeypatch.delenv("RESLAB_DATA_DIR")
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nope")


def _corrupt(tmp_path, name, mutate):
    folder = write_fake_cifar(tmp_path, per_batch=20, test=10, as_archive=False)
    p = folder / name
    with open(p, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    mutate(d)
    p.write_bytes(pickle.dumps(d, protocol=2))
    return folder


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.__setitem__(b"data", d[b"data"][:, :3000]), r"shape \(20, 3000\)"),
    (lambda d: d.__setitem__(b"data", d[b"data"].astype(np.float32)), "dtype float32"),
    (lambda d: d[b"labels"].__setitem__(0, 11), r"labels range 0\.\.11"),
    (lambda d: d.__setitem__(b"labels", d[b"labels"][:-1]), "19 labels for 20 images"),
])
def test_structural_check_names_the_file(tmp_path, mutate, needle):
    folder = _corrupt(tmp_path, "data_batch_2", mutate)
    with pytest.raises(DataError, match=needle) as e:
        read_cifar10(folder)
    assert "data_batch_2" in str(e.value)


def test_training_batches_of_different_sizes_are_refused(tmp_path):
    folder = _corrupt(tmp_path, "data_batch_3", lambda d: (d.__setitem__(b"data", d[b"data"][:10]),
                                                           d.__setitem__(b"labels", d[b"labels"][:10])))
    with pytest.raises(DataError, match=r"training batches have different sizes \[10, 20\]"):
        read_cifar10(folder)


def test_archive_member_order_does_not_matter(tmp_path):
    # batches are placed by name as they are read, whatever order the archive stores them in
    folder = write_fake_cifar(tmp_path / "f", per_batch=20, test=10, seed=3, as_archive=False)
    archive = tmp_path / "a" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(folder.iterdir(), reverse=True):
            tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
    a, b = read_cifar10(archive), read_cifar10(folder)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.train_labels, b.train_labels)
    with open(folder / "data_batch_2", "rb") as f:
        second = pickle.load(f, encoding="bytes")
    assert torch.equal(a.train_images[20].flatten(), torch.from_numpy(second[b"data"][0]))


def test_unbalanced_classes_rejected(tmp_path):
    def unbalance(d):
        d[b"labels"] = [0] * len(d[b"labels"])
    with pytest.raises(DataError, match="images per class"):
        read_cifar10(_corrupt(tmp_path, "test_batch", unbalance))


def test_truncated_and_non_gzip_archives(tmp_path, fake_dir):
    raw = (fake_dir / "cifar-10-python.tar.gz").read_bytes()
    trunc = tmp_path / "t" / "cifar-10-python.tar.gz"
    trunc.parent.mkdir()
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable CIFAR-10 archive"):
        load_cifar10(trunc.parent)
    junk = tmp_path / "j" / "cifar-10-python.tar.gz"
    junk.parent.mkdir()
    junk.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match=str(junk.name)):
        load_cifar10(junk.parent)


def test_missing_batch_is_named(tmp_path):
    folder = write_fake_cifar(tmp_path, per_batch=20, test=10, as_archive=False)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="lacks data_batch_4"):
        read_cifar10(folder)


def test_failed_download_leaves_nothing_and_says_how_to_point(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    target = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        cifar_mod.download(target)
    msg = str(e.value)
    assert "network is unreachable" in msg and "--data-dir" in msg and "RESLAB_DATA_DIR" in msg
    assert "\n" not in msg
    assert not target.exists()  # not even the folder it would have made


def test_md5_mismatch_leaves_nothing(tmp_path, fake_dir):
    src = fake_dir / "cifar-10-python.tar.gz"
    target = tmp_path / "dl"
    with pytest.raises(DataError, match="md5"):
        cifar_mod.download(target, dataclasses.replace(cifar_mod.CIFAR10, url=src.as_uri()))
    assert not target.exists()
    # with the right md5 the same file is accepted and renamed into place
    spec = dataclasses.replace(cifar_mod.CIFAR10, url=src.as_uri(), md5=cifar_mod.md5sum(src))
    out = cifar_mod.download(target, spec)
    assert out.name == "cifar-10-python.tar.gz" and [p.name for p in target.iterdir()] == [out.name]


def test_empty_default_dir_triggers_download(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cifar_mod, "download", lambda d, spec: calls.append(d) or (_ for _ in ()).throw(DataError("x")))
    with pytest.raises(DataError):
        load_cifar10()
    assert calls and calls[0] == tmp_path / "cache" / "reslab" / "data"


def test_splits_are_balanced_deterministic_and_disjoint():
    labels = torch.arange(10).repeat_interleave(100)
    test_labels = torch.arange(10).repeat_interleave(20)
    s1 = make_splits(labels, test_labels, val_size=200, split_seed=0)
    s2 = make_splits(labels, test_labels, val_size=200, split_seed=0)
    s3 = make_splits(labels, test_labels, val_size=200, split_seed=1)
    assert torch.equal(s1.val, s2.val) and not torch.equal(s1.val, s3.val)
    assert set(s1.train.tolist()).isdisjoint(s1.val.tolist())
    assert len(s1.train) + len(s1.val) == 1000
    assert labels[s1.val].bincount().tolist() == [20] * 10
    sub = make_splits(labels, test_labels, val_size=200, split_seed=0, train_subset=105, test_subset=50)
    assert len(sub.train) == 105 and set(sub.train.tolist()) <= set(s1.train.tolist())
    assert labels[sub.train].bincount().tolist() == [11] * 5 + [10] * 5
    assert test_labels[sub.test].bincount().tolist() == [5] * 10
    full = make_splits(labels, test_labels, val_size=0, split_seed=0)
    assert len(full.train) == 1000 and len(full.val) == 0


def test_normalizer_statistics_from_training_images():
    imgs = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    ch = Normalizer.fit(imgs, "channel")
    x = ch(imgs)
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    px = Normalizer.fit(imgs, "pixel")
    assert px.mean.shape == (3, 32, 32)
    assert torch.allclose(px(imgs).mean(0), torch.zeros(3, 32, 32), atol=1e-5)
    rt = Normalizer.from_state_dict(ch.state_dict())
    assert torch.equal(rt(imgs), x)


@pytest.mark.parametrize("kind", ["channel", "pixel"])
def test_normalizer_fit_in_chunks_equals_the_float64_statistics(monkeypatch, kind):
    # fit sums exact integers a chunk at a time (no float copy of the set); the result is what float64 over the
    # whole set gives, to the last bit of float32, with or without `rows`, whatever the chunk size
    monkeypatch.setattr(pipeline_mod, "FIT_CHUNK", 7)
    imgs = torch.randint(0, 256, (61, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    rows = torch.tensor([60, 3, 5, 8, 13, 21, 34, 55, 0, 1, 2])
    for sel, fit in ((imgs, Normalizer.fit(imgs, kind)), (imgs[rows], Normalizer.fit(imgs, kind, rows=rows))):
        x = sel.double() / 255
        if kind == "pixel":
            assert torch.equal(fit.mean, x.mean(0).float()) and fit.std is None
        else:
            assert torch.equal(fit.mean, x.mean((0, 2, 3)).float())
            assert torch.equal(fit.std, x.transpose(0, 1).reshape(3, -1).std(1, unbiased=False).float())


def test_augment_is_pad_crop_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32) + 1
    g = torch.Generator().manual_seed(0)
    y = augment(x, g)
    assert y.shape == x.shape
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for b in range(2):
        hit = False
        for oy in range(9):
            for ox in range(9):
                crop = xp[b, :, oy:oy + 32, ox:ox + 32]
                if torch.equal(y[b], crop) or torch.equal(y[b], crop.flip(-1)):
                    hit = True
        assert hit, "every augmented image is a crop of the zero-padded image, maybe flipped"
    # same generator seed, same result; the flip happens about half the time
    assert torch.equal(y, augment(x, torch.Generator().manual_seed(0)))
    big = torch.zeros(4000, 1, 32, 32)
    big[..., :16] = 1
    out = augment(big, torch.Generator().manual_seed(1), pad=0)
    flipped = (out[:, 0, 0, 0] == 0).float().mean()
    assert 0.45 < flipped < 0.55


@pytest.mark.realdata
@requires_real_data
def test_shared_copy_of_real_cifar10_loads():
    d = load_cifar10(REAL_ARCHIVE.parent)
    assert d.train_images.shape == (50000, 3, 32, 32) and d.test_images.shape == (10000, 3, 32, 32)
    assert d.train_labels.bincount().tolist() == [5000] * 10
    assert d.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert d.train_images[0, 0, 0, :3].tolist() == [59, 43, 50]
    mean = (d.train_images.double() / 255).mean((0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.49139968, 0.48215841, 0.44653091], dtype=torch.float64), atol=1e-7)
