"""reslab's own published weights: a finished run's final iteration written by benchmarks/publish_weights.py,
shipped inside the package, loadable by name offline (`pretrained="reslab"`, and `True` for a plain net), with
its sha256 checked at every load and the test error the table states."""
import importlib.util
import json
import re

import pytest
import torch

from reslab import ReslabError
from reslab.cli import main
from reslab.data import Normalizer, load_cifar10
from reslab.engine import train
from reslab.engine.evaluate import evaluate
from reslab.models import create_model
from reslab.weights import store
from reslab.weights import table as pub
from reslab.weights.files import load_run_checkpoint

from conftest import REAL_ARCHIVE, REPO, requires_real_data

_spec = importlib.util.spec_from_file_location("publish_weights", REPO / "benchmarks" / "publish_weights.py")
publish = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(publish)

OWN = [p for p in pub.PUBLISHED.values() if p.source == "reslab"]


@pytest.fixture
def published_plain8(tiny_cfg, fake_dir, tmp_path, monkeypatch, capsys):
    """A finished tiny plain8 run, published into a stand-in package folder and entered in the table."""
    run = train(tiny_cfg(**{"model.name": "plain8"}), runs_dir=tmp_path / "runs", quiet=True)
    assert publish.main([str(run), "--data-dir", str(fake_dir), "--out-dir", str(tmp_path / "published")]) == 0
    out = capsys.readouterr().out
    sha, err = re.search(r'reslab_weights\("plain8", "([0-9a-f]{64})", ([\d.]+)', out).groups()
    monkeypatch.setattr(store, "BUNDLED_DIR", tmp_path / "published")
    monkeypatch.setitem(pub.PUBLISHED, ("plain8", "reslab"), pub.reslab_weights("plain8", sha, float(err), "tiny"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-cache"))  # nothing to find or download there
    return run, float(err)


def test_published_weights_are_the_runs_final_ones_and_load_by_name(published_plain8, fake_dir):
    run, err = published_plain8
    final, _ = load_run_checkpoint(run, "last")
    for pretrained in ("reslab", True):  # True: plain8 has no akamaster weights, so its only source
        model = create_model("plain8", pretrained=pretrained)
        assert model.pretrained_origin["source"] == "reslab"
        for k, v in final["model_state"].items():
            assert torch.equal(model.state_dict()[k], v), k
    data = load_cifar10(fake_dir)
    res = evaluate(model, data.test_images, data.test_labels, Normalizer.from_model(model), batch_size=500)
    assert round(res.error, 2) == err
    assert Normalizer.from_model(model).kind == final["normalization"]["kind"]


def test_a_changed_bundled_file_is_refused(published_plain8, tmp_path):
    entry = pub.PUBLISHED[("plain8", "reslab")]
    path = tmp_path / "published" / entry.filename
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ReslabError, match="not the published"):
        create_model("plain8", pretrained="reslab")
    path.unlink()
    with pytest.raises(ReslabError, match="should ship with reslab .* missing"):
        create_model("plain8", pretrained="reslab")


def test_an_unfinished_run_is_not_published(tiny_cfg, fake_dir, tmp_path):
    run = train(tiny_cfg(**{"model.name": "plain8"}), runs_dir=tmp_path / "runs", quiet=True)
    (run / "summary.json").write_text((run / "summary.json").read_text().replace('"finished"', '"interrupted"'))
    with pytest.raises(ReslabError, match="has not finished"):
        publish.main([str(run), "--data-dir", str(fake_dir), "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing written before the input is known good


def test_the_default_source_stays_akamaster_where_it_exists():
    assert pub.published("resnet20").source == "akamaster"


@pytest.mark.parametrize("entry", OWN, ids=[p.filename for p in OWN])
def test_every_own_entry_ships_with_the_package_and_verifies(entry):
    assert (store.BUNDLED_DIR / entry.filename).is_file()
    model = create_model(entry.model, pretrained="reslab")
    assert model.pretrained_origin["sha256"] == entry.sha256


@requires_real_data
@pytest.mark.realdata
@pytest.mark.parametrize("entry", OWN, ids=[p.filename for p in OWN])
def test_own_weights_give_the_stated_test_error(entry):
    data = load_cifar10(REAL_ARCHIVE.parent)
    model = create_model(entry.model, pretrained="reslab").to(memory_format=torch.channels_last)
    res = evaluate(model, data.test_images, data.test_labels, Normalizer.from_model(model), batch_size=500,
                   channels_last=True)
    assert round(res.error, 2) == entry.test_error


def test_name_at_source_picks_the_weights_on_the_command_line(fake_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    entry = pub.published("resnet20", "reslab")
    assert main(["eval", "resnet20@reslab", "--json", "--no-csv", "--data-dir", str(fake_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "resnet20" and out["checkpoint"] == str(store.BUNDLED_DIR / entry.filename)
    # an unknown source: one line naming the sources there are, nothing written
    assert main(["eval", "resnet20@nosuch", "--data-dir", str(fake_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch" in err and "reslab" in err
    assert list(tmp_path.iterdir()) == []


def test_fig7_is_measured_on_published_weights_by_name(fake_dir, tmp_path, monkeypatch, capsys):
    """`reslab analyze responses resnet20@reslab` measures the bundled weights, labelled as typed."""
    monkeypatch.chdir(tmp_path)
    entry = pub.published("resnet20", "reslab")
    assert main(["analyze", "responses", "resnet20@reslab", "--max-images", "50", "--data-dir", str(fake_dir),
                 "--out", "fig7"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("resnet20@reslab"))
    assert "19 layers" in line and str(store.BUNDLED_DIR / entry.filename) in line
    rows = (tmp_path / "fig7" / "responses.csv").read_text().splitlines()
    assert rows[0].startswith("label,model,")
    assert sum("resnet20@reslab" in r for r in rows) == 19
    assert main(["analyze", "responses", "resnet20@nosuch", "--out", "fig7b"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "fig7b").exists()
