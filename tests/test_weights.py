"""Weights in and out: published weights by name (sha256 every load, download without partial files), the attached
normalisation, torch.hub, fine-tuning with --init-from, and the exports (ONNX, torch.export, safetensors, folder)."""
import dataclasses
import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from reslab import ReslabError
from reslab.cli import main
from reslab.config import load_config
from reslab.data import Normalizer, load_cifar10
from reslab.engine import train
from reslab.engine.evaluate import evaluate
from reslab.models import create_model, from_pretrained
from reslab.weights import table as pub
from reslab.weights.files import load_checkpoint, save_checkpoint

from conftest import AKAMASTER, REAL_ARCHIVE, REPO, randomise_bn, requires_real_data

needs_akamaster = pytest.mark.skipif(not (AKAMASTER / "resnet20-12fca82f.th").is_file(),
                                     reason=f"akamaster weights not in {AKAMASTER}")


def closed_port_url(name: str) -> str:
    """An address on this machine where nothing listens: 'no network', answered at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No RESLAB_WEIGHTS_DIR, and torch's hub cache in an empty temporary folder."""
    monkeypatch.delenv("RESLAB_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def with_url(monkeypatch, model: str, url: str) -> None:
    entry = pub.PUBLISHED[(model, "akamaster")]
    monkeypatch.setitem(pub.PUBLISHED, (model, "akamaster"), dataclasses.replace(entry, url=url))


# ---- published weights -----------------------------------------------------------------------------------------

@needs_akamaster
def test_the_table_holds_the_full_sha256_of_every_file():
    for p in pub.PUBLISHED.values():
        f = AKAMASTER / p.filename
        if f.is_file():
            assert hashlib.sha256(f.read_bytes()).hexdigest() == p.sha256, p.filename


@needs_akamaster
def test_pretrained_by_name_attaches_its_normalisation(monkeypatch):
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(AKAMASTER))
    model = create_model("resnet20", pretrained=True).eval()
    norm = Normalizer.from_model(model)
    assert norm.kind == "channel" and torch.allclose(norm.mean, torch.tensor(pub.IMAGENET_MEAN))
    assert model.pretrained_origin["sha256"] == pub.PUBLISHED[("resnet20", "akamaster")].sha256
    unit = create_model("resnet20", pretrained="akamaster", normalize_input=True).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():  # the [0, 1] net is the normalised-input net behind the normalisation, nothing else
        assert torch.allclose(unit(images.float() / 255), model(norm(images)), atol=1e-5)
    with pytest.raises(ReslabError, match="carries no normalisation"):
        Normalizer.from_model(create_model("resnet20"))


@needs_akamaster
def test_download_goes_to_the_cache_once_and_is_checked(empty_cache, monkeypatch):
    with_url(monkeypatch, "resnet20", (AKAMASTER / "resnet20-12fca82f.th").as_uri())
    create_model("resnet20", pretrained=True)
    assert [p.name for p in empty_cache.iterdir()] == ["resnet20-12fca82f.th"]
    with_url(monkeypatch, "resnet20", closed_port_url("gone.th"))  # the cached copy is used, no network
    create_model("resnet20", pretrained=True)
    (empty_cache / "resnet20-12fca82f.th").write_bytes(b"tampered")
    with pytest.raises(ReslabError, match=r"has sha256 .* not the published .* delete it"):
        create_model("resnet20", pretrained=True)


@needs_akamaster
def test_a_download_with_the_wrong_hash_leaves_nothing(empty_cache, monkeypatch):
    with_url(monkeypatch, "resnet20", (AKAMASTER / "resnet32-d509ac18.th").as_uri())
    with pytest.raises(ReslabError, match="not the published .* nothing was kept"):
        create_model("resnet20", pretrained=True)
    assert not empty_cache.exists() or not any(empty_cache.iterdir())


def test_no_network_is_one_line_and_leaves_the_cache_unchanged(empty_cache, monkeypatch, capsys):
    with_url(monkeypatch, "resnet56", closed_port_url("resnet56.th"))
    with pytest.raises(ReslabError, match=r"downloading http://127.0.0.1:\d+/resnet56.th failed .*RESLAB_WEIGHTS_DIR"):
        create_model("resnet56", pretrained=True)
    assert not empty_cache.exists() or not any(empty_cache.iterdir())
    assert main(["export", "resnet56", "--format", "folder", "--out", str(empty_cache.parent / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed" in err and not (empty_cache.parent / "out").exists()


def test_unknown_pretrained_names_say_what_exists(tmp_path):
    with pytest.raises(ReslabError, match=r"no published weights for 'resnet8'; published: resnet20 \(akamaster\)"):
        create_model("resnet8", pretrained=True)
    with pytest.raises(ReslabError, match="neither a published source"):
        create_model("resnet20", pretrained=str(tmp_path / "nothing-here"))


# ---- weights of reslab runs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fake_dir):
    cfg = load_config(None, {"model.name": "resnet8", "data.dir": str(fake_dir), "data.val_size": 50,
                             "train.batch_size": 25, "train.iterations": 10, "train.eval_every": 5,
                             "log.progress": False, "log.tensorboard": False, "optim.lr": 0.05})
    return train(cfg, runs_dir=tmp_path_factory.mktemp("runs"), quiet=True)


def last_weights(run: Path) -> dict:
    return load_checkpoint(sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1])["model_state"]


def test_a_run_directory_is_pretrained_weights_of_its_model(tiny_run):
    model = create_model("resnet8", pretrained=tiny_run)
    assert all(torch.equal(v, last_weights(tiny_run)[k]) for k, v in model.state_dict().items())
    assert model.normalizer.kind == "channel"
    with pytest.raises(ReslabError, match="holds weights of resnet8, not plain14"):
        create_model("plain14", pretrained=tiny_run)


def test_init_from_starts_a_new_run_from_those_weights(tiny_run, fake_dir, tmp_path, capsys):
    code = main(["train", "--model", "resnet8", "--data-dir", str(fake_dir), "--init-from", str(tiny_run),
                 "--runs-dir", str(tmp_path), "--run-name", "ft", "--quiet", "--set", "data.val_size=50",
                 "--set", "train.batch_size=25", "--set", "train.iterations=5", "--set", "log.tensorboard=false"])
    assert code == 0
    run = tmp_path / "ft"
    start = load_checkpoint(run / "checkpoints" / "ckpt-00000000.pt")
    assert all(torch.equal(v, last_weights(tiny_run)[k]) for k, v in start["model_state"].items())  # loaded
    assert not all(torch.equal(v, start["model_state"][k]) for k, v in last_weights(run).items())  # then trained
    assert start["optimizer"]["state"] == {}  # a fresh optimiser
    src = load_checkpoint(sorted((tiny_run / "checkpoints").glob("ckpt-*.pt"))[-1])
    assert torch.equal(start["normalization"]["mean"], src["normalization"]["mean"])  # its normalisation kept
    assert json.loads((run / "env.json").read_text())["init_from"]["kind"] == "checkpoint"
    assert "initial weights: resnet8 from" in (run / "train.log").read_text()


def test_init_from_replaces_a_classifier_of_another_size_and_refuses_another_net(tiny_run, fake_dir, tmp_path):
    src = load_checkpoint(sorted((tiny_run / "checkpoints").glob("ckpt-*.pt"))[-1])
    wide = create_model("resnet8", num_classes=100)
    own = src["model_state"]
    state = {k: (wide.state_dict()[k] if k.startswith("fc.") else v) for k, v in own.items()}
    save_checkpoint({**src, "model": {"name": "resnet8", "kwargs": {"shortcut": "A", "num_classes": 100}},
                     "model_state": state}, tmp_path / "c100.pt")
    base = {"model.name": "resnet8", "data.dir": str(fake_dir), "data.val_size": 50, "train.batch_size": 25,
            "train.iterations": 4, "log.progress": False, "log.tensorboard": False,
            "model.init_from": str(tmp_path / "c100.pt")}
    run = train(load_config(None, base), runs_dir=tmp_path / "runs", quiet=True)
    assert "classifier replaced (100 classes in the source, 10 here)" in (run / "train.log").read_text()
    start = load_checkpoint(run / "checkpoints" / "ckpt-00000000.pt")["model_state"]
    assert torch.equal(start["layer1.0.conv1.weight"], own["layer1.0.conv1.weight"])
    with pytest.raises(ReslabError, match="holds weights of resnet8, but this run trains plain8"):
        train(load_config(None, {**base, "model.name": "plain8"}), runs_dir=tmp_path / "runs2", quiet=True)
    assert not (tmp_path / "runs2").exists() or not any((tmp_path / "runs2").iterdir())


# ---- exports ---------------------------------------------------------------------------------------------------

@pytest.fixture(params=["A", "B", "C"])
def random_ckpt(request, tmp_path):
    model = randomise_bn(create_model("resnet8", shortcut=request.param), seed=1, spread=0.3)
    norm = Normalizer("channel", torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3]), note="test")
    path = tmp_path / f"r8{request.param}.pt"
    save_checkpoint({"kind": "imported", "model": {"name": "resnet8", "kwargs": {"shortcut": request.param}},
                     "model_state": model.state_dict(), "normalization": norm.state_dict(), "config": None}, path)
    return path


def reference_logits(ckpt_path: Path, images01: torch.Tensor) -> torch.Tensor:
    model = create_model("resnet8", pretrained=ckpt_path, normalize_input=True).eval()
    with torch.no_grad():
        return model(images01)


def test_onnx_matches_pytorch_with_folded_bn_under_every_shortcut(random_ckpt, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "m.onnx"
    assert main(["export", str(random_ckpt), "--format", "onnx", "--out", str(out)]) == 0
    x = torch.rand(37, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # a batch size it never saw
    got = ort.InferenceSession(str(out)).run(None, {"images": x.numpy()})[0]
    want = reference_logits(random_ckpt, x)
    assert float((torch.from_numpy(got) - want).abs().max()) < 1e-4
    assert torch.equal(torch.from_numpy(got).argmax(1), want.argmax(1))


def test_pt2_folder_and_safetensors_round_trip(random_ckpt, tmp_path):
    pytest.importorskip("safetensors")
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    want = reference_logits(random_ckpt, x)
    for fmt, name in (("pt2", "m.pt2"), ("folder", "m"), ("safetensors", "m.safetensors")):
        assert main(["export", str(random_ckpt), "--format", fmt, "--out", str(tmp_path / name)]) == 0
    with torch.no_grad():
        assert torch.allclose(torch.export.load(str(tmp_path / "m.pt2")).module()(x), want, atol=1e-5)
        folder = from_pretrained(tmp_path / "m", normalize_input=True).eval()
        assert torch.equal(folder(x), want)  # the same weights: bit-identical outputs
        single = create_model("resnet8", pretrained=tmp_path / "m.safetensors", normalize_input=True).eval()
        assert torch.equal(single(x), want)
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: reslab") and "resnet8" in card and "Normalised images" in card
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model"] == "resnet8"


def test_export_refuses_bad_sources_and_writes_nothing(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    for source, fmt, needle in ((str(junk), "onnx", "cannot be read"), ("resnet7", "pt2", "neither an existing"),
                                (str(broken), "folder", "safetensors")):
        assert main(["export", source, "--format", fmt, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    assert main(["export", str(junk), "--format", "pt2", "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err


# ---- torch.hub, and the published errors on the real test set -------------------------------------------------

def test_hubconf_lists_every_model_and_loads_without_an_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = torch.hub.load(str(REPO), "plain20", source="local")
    assert not model.residual
    import hubconf  # the module torch.hub imported (the repo root is on sys.path now)
    assert {"resnet20", "plain56", "resnet18_ms", "resnet1202"} <= {n for n in dir(hubconf) if not n.startswith("_")}
    assert "published weights" in hubconf.resnet56.__doc__


@requires_real_data
@needs_akamaster
@pytest.mark.realdata
@pytest.mark.parametrize("name,published_error", [("resnet20", 8.27), ("resnet56", 6.61)])
def test_hub_pretrained_reaches_the_published_error(name, published_error, empty_cache, monkeypatch):
    empty_cache.mkdir(parents=True)
    shutil.copy(AKAMASTER / pub.PUBLISHED[(name, "akamaster")].filename, empty_cache)  # torch's hub cache, pre-filled
    with_url(monkeypatch, name, closed_port_url("x.th"))  # ... so nothing is downloaded
    data = load_cifar10(REAL_ARCHIVE.parent)
    for model in (torch.hub.load(str(REPO), name, source="local", pretrained=True),
                  create_model(name, pretrained=True)):
        res = evaluate(model.to(memory_format=torch.channels_last), data.test_images, data.test_labels,
                       Normalizer.from_model(model), batch_size=500, channels_last=True)
        assert round(res.error, 2) == published_error


def test_black_padding_pads_pixels_before_normalising():
    from reslab.data import augment
    from reslab.engine.step import training_batch

    images = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    norm = Normalizer("channel", torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]))
    idx = torch.arange(4)
    black, _ = training_batch(images, torch.zeros(4, dtype=torch.long), idx, norm, augment_seed=3, pad_fill="black")
    mean, _ = training_batch(images, torch.zeros(4, dtype=torch.long), idx, norm, augment_seed=3)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(black, norm(augment(images, g)))  # the same crops and flips, padded with pixel 0
    assert black.min() == pytest.approx(-2.0) and mean.min() == pytest.approx(0.0)  # (0 - .5) / .25 vs the mean


@needs_akamaster
def test_init_from_published_weights_takes_their_conventions(fake_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(AKAMASTER))
    assert main(["train", "--model", "resnet20", "--data-dir", str(fake_dir), "--init-from", "resnet20", "--quiet",
                 "--runs-dir", str(tmp_path), "--run-name", "ft", "--set", "data.val_size=50", "--set",
                 "train.batch_size=25", "--set", "train.iterations=2", "--set", "optim.milestones=[]"]) == 0
    cfg = (tmp_path / "ft" / "config.yaml").read_text()
    assert "pad_fill: black" in cfg and "normalization: init" in cfg and "init_from: resnet20" in cfg
    norm = load_checkpoint(tmp_path / "ft" / "checkpoints" / "ckpt-00000002.pt")["normalization"]
    assert torch.allclose(norm["mean"], torch.tensor(pub.IMAGENET_MEAN))
    assert main(["train", "--model", "resnet20", "--data-dir", str(fake_dir), "--init-from", "resnet20", "--quiet",
                 "--runs-dir", str(tmp_path), "--run-name", "ft2", "--set", "data.normalization=channel",
                 "--set", "data.val_size=50", "--set", "train.batch_size=25", "--set", "train.iterations=1",
                 "--set", "optim.milestones=[]"]) == 0
    assert "normalization: channel" in (tmp_path / "ft2" / "config.yaml").read_text()  # an explicit choice wins


@pytest.fixture
def stand_in_resnet20(tmp_path, monkeypatch):
    """An akamaster-style resnet20 file (DataParallel keys, `linear`, no BN counters) standing in for the published
    one: the table entry points at it (its sha256), found in $RESLAB_WEIGHTS_DIR."""
    model = randomise_bn(create_model("resnet20"), seed=3)
    state = {"module." + k.replace("fc.", "linear."): v for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    d = tmp_path / "weights"
    d.mkdir()
    f = d / "stand-in-resnet20.th"
    torch.save({"state_dict": state, "best_prec1": 91.0}, f)
    entry = pub.PUBLISHED[("resnet20", "akamaster")]
    monkeypatch.setitem(pub.PUBLISHED, ("resnet20", "akamaster"), dataclasses.replace(
        entry, filename=f.name, sha256=hashlib.sha256(f.read_bytes()).hexdigest(), url=closed_port_url(f.name)))
    monkeypatch.setenv("RESLAB_WEIGHTS_DIR", str(d))
    return f


def test_eval_takes_a_published_model_by_name(stand_in_resnet20, fake_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "resnet20", "--json", "--data-dir", str(fake_dir)]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert by_name["model"] == "resnet20" and by_name["checkpoint"] == str(stand_in_resnet20)
    assert (tmp_path / "resnet20.confusion-test.csv").is_file()
    # the same numbers as the file imported by hand and evaluated as a checkpoint
    assert main(["import", "akamaster", str(stand_in_resnet20), "--out", str(tmp_path / "imported.pt")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "imported.pt"), "--json", "--data-dir", str(fake_dir)]) == 0
    by_file = json.loads(capsys.readouterr().out)
    assert (by_name["test_error"], by_name["confusion"]) == (by_file["test_error"], by_file["confusion"])
    assert by_name["normalization"] == "ImageNet mean/std, as these weights were trained by akamaster"
    # a name that is neither a path nor published: one line naming what is
    assert main(["eval", "resnet8", "--data-dir", str(fake_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'resnet8' is neither an existing run directory or checkpoint file" in err
    assert "resnet20" in err
