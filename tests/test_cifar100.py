"""CIFAR-100 (data.dataset=cifar100) on a generated archive in the official on-disk format: reading and its
structural checks, training with 100 classes, a CIFAR-10 -> CIFAR-100 warm start, evaluation and a study report
that stays readable with 100 classes."""
import json

import pytest
import torch

from reslab import ReslabError
from reslab.cli import main
from reslab.config import load_config
from reslab.data import DataError, load_dataset
from reslab.data.synthetic import write_fake_cifar100
from reslab.engine import train
from reslab.report import write_report
from reslab.study import plan_degradation, run_study
from reslab.weights.files import load_checkpoint

TINY = {"data.dataset": "cifar100", "data.val_size": 100, "train.batch_size": 50, "train.iterations": 6,
        "train.eval_every": 3, "log.progress": False, "log.tensorboard": False, "optim.lr": 0.05}


@pytest.fixture(scope="module")
def c100_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("c100")
    write_fake_cifar100(d, train=1000, test=200)
    return d


def test_the_archive_reads_with_its_100_fine_label_names(c100_dir):
    data = load_dataset("cifar100", c100_dir)
    assert data.dataset == "cifar100" and len(data.classes) == 100 and data.classes[7] == "class07"
    assert data.train_images.shape == (1000, 3, 32, 32) and data.test_labels.bincount().tolist() == [2] * 100
    assert not data.official  # a generated copy, not the official byte stream


def test_broken_labels_are_one_clear_line(tmp_path):
    def out_of_range(labels):
        labels = labels.copy()
        labels[0] = 100
        return labels

    write_fake_cifar100(tmp_path, labels_hook=out_of_range)
    with pytest.raises(DataError, match=r"train: labels range 0..100; expected 0..99") as e:
        load_dataset("cifar100", tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(ReslabError, match="data.dataset='cifar1000' is not allowed; allowed: cifar10, cifar100"):
        load_config(None, {"data.dataset": "cifar1000"})


def test_a_run_trains_evaluates_and_reports_100_classes(c100_dir, tmp_path, capsys):
    run = train(load_config(None, {**TINY, "model.name": "resnet8", "data.dir": str(c100_dir)}), runs_dir=tmp_path,
                quiet=True)
    ckpt = load_checkpoint(run / "checkpoints" / "ckpt-00000006.pt")
    assert ckpt["model"]["kwargs"]["num_classes"] == 100 and ckpt["model_state"]["fc.weight"].shape == (100, 64)
    te = json.loads((run / "test_eval.json").read_text())
    assert len(te["per_class"]) == 100 and len(te["confusion"]) == 100 and te["n"] == 200
    capsys.readouterr()  # the training's own lines
    assert main(["eval", str(run), "--json", "--no-csv"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 200


def test_a_cifar10_net_warm_starts_cifar100_with_a_new_classifier(c100_dir, fake_dir, tmp_path):
    c10 = train(load_config(None, {"model.name": "resnet8", "data.dir": str(fake_dir), "data.val_size": 50,
                                   "train.batch_size": 25, "train.iterations": 4, "log.progress": False,
                                   "log.tensorboard": False}), runs_dir=tmp_path / "c10", quiet=True)
    run = train(load_config(None, {**TINY, "model.name": "resnet8", "data.dir": str(c100_dir),
                                   "model.init_from": str(c10)}), runs_dir=tmp_path / "c100", quiet=True)
    assert "classifier replaced (10 classes in the source, 100 here)" in (run / "train.log").read_text()
    start = load_checkpoint(run / "checkpoints" / "snapshot-00000000.pt")["model_state"]  # the weights at iteration 0
    source = load_checkpoint(sorted((c10 / "checkpoints").glob("ckpt-*.pt"))[-1])["model_state"]
    assert all(torch.equal(start[k], v) for k, v in source.items() if not k.startswith("fc."))  # the rest loaded
    assert start["fc.weight"].shape == (100, 64)


def test_a_cifar100_study_report_stays_readable(c100_dir, tmp_path):
    over = [f"{k}={v}" for k, v in TINY.items()] + ["data.train_subset=null", "data.val_subset=null",
                                                     "data.test_subset=null", "optim.warmup=none"]
    spec = plan_degradation("quick", (8,), overrides=over, data_dir=str(c100_dir))
    assert run_study(spec, tmp_path / "s", quiet=True, log=lambda m: None)
    md = write_report(tmp_path / "s")["md"].read_text()
    assert "on CIFAR-100 (quick profile)" in md and "the 10 worst and the 10 best" in md
    assert "The paper reports CIFAR-10 only" in md and (tmp_path / "s" / "report" / "confusion.png").is_file()
