"""Runs written before the architecture change (tests/fixtures/v1-run, made by tests/fixtures/make_v1_run.py with
reslab 0.1.0 at 099c7ee) still resume — every piece of state restored exactly — and evaluate to the same numbers."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from reslab import ReslabError
from reslab.data import load_cifar10
from reslab.data.synthetic import write_fake_cifar
from reslab.engine import distributed
from reslab.weights.files import load_checkpoint
from reslab.engine.eval_run import evaluate_checkpoint
from reslab.engine.runs import read_metrics
from reslab.engine.writer import RunWriter
from reslab.engine.trainer import Run, build_setup, find_resume_point, payload, start_or_resume, train
from reslab.engine.state import TrainState, resumable_payload
from reslab.trackers import Trackers
from reslab.config import from_dict, to_dict, validate

FIXTURE = Path(__file__).parent / "fixtures" / "v1-run"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def v1_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("v1data")
    write_fake_cifar(d, per_batch=60, test=60, seed=0)  # the data the fixture was trained on
    return load_cifar10(d)


@pytest.fixture
def v1_run(tmp_path):
    return Path(shutil.copytree(FIXTURE / "resnet8-v1", tmp_path / "resnet8-v1"))


def equal(a, b) -> bool:
    """Deep equality of checkpoint contents (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def test_v1_checkpoint_restores_every_piece_of_state_exactly(v1_run, v1_data):
    old = load_checkpoint(v1_run / "checkpoints" / "ckpt-00000007.pt", require_checksum=True)
    found = find_resume_point(v1_run, quiet=True)
    assert found.ckpt_path.name == "ckpt-00000007.pt"
    ctx = distributed.setup()
    setup = build_setup(ctx, validate(from_dict(found.ckpt["config"])), v1_data)
    writer = RunWriter(ctx, v1_run, quiet=True)  # what train() opens for a resume, holding the run's lock
    run = Run(setup, writer, TrainState.fresh(setup.dev), Trackers([], writer.log))
    try:
        start_or_resume(run, found)
    finally:
        run.writer.close()
    st = run.state
    assert (st.iteration, len(st.rows), st.progress.seen) == (7, 1, 50)  # two steps of 25 since the last row
    assert equal(setup.model.state_dict(), old["model_state"])
    assert equal(setup.optimizer.state_dict(), old["optimizer"])
    assert equal(setup.scaler.state_dict(), old["scaler"]) and equal(setup.lrs.state_dict(), old["schedule"])
    assert torch.equal(torch.get_rng_state(), old["rng"]["torch"])
    assert equal(st.progress.state_dict(), old["progress"])
    assert [int(st.warmup_errors), st.warmup_seen] == old["warmup_window"]
    assert (st.rows, st.best, st.train_log, st.log_mark) == (old["rows"], old["best"], old["train_log"],
                                                             old["log_mark"])
    # what the new code would write back is the old checkpoint, key for key (the layout did not move)
    again = resumable_payload(payload(run, "resumable"), setup.optimizer, setup.scaler, setup.lrs, st,
                              st.progress.state_dict(), None)
    old_body = {k: v for k, v in old.items() if k not in ("format", "version")}
    assert list(again) == list(old_body)
    same = lambda d: {k: v for k, v in d.items() if k not in ("rng", "config")}  # noqa: E731
    assert equal(same(again), same(old_body))
    # the config: every old key keeps its value (log.tensorboard: false is now train.loggers: []); keys added
    # since come in at their defaults
    assert again["config"] == to_dict(from_dict(old["config"]))
    assert all(again["config"][sec][k] == v for sec, d in old["config"].items() for k, v in d.items()
               if f"{sec}.{k}" != "log.tensorboard")
    assert old["config"]["log"]["tensorboard"] is False and again["config"]["train"]["loggers"] == []
    # the CSVs were rewritten from the restored rows, unchanged
    assert read_metrics(v1_run / "metrics.csv") == read_metrics(FIXTURE / "resnet8-v1" / "metrics.csv")
    assert read_metrics(v1_run / "train_log.csv") == read_metrics(FIXTURE / "resnet8-v1" / "train_log.csv")
    run.trackers.close("interrupted")
    run.writer.close()


@pytest.mark.parametrize("split", ["test", "val"])
def test_v1_checkpoint_evaluates_to_the_numbers_it_had(v1_run, v1_data, split):
    res, ckpt, path = evaluate_checkpoint(v1_run, split=split, data=v1_data, device="cpu")
    want = EXPECTED[split]
    assert path.name == want["checkpoint"] and res.n == want["n"]
    assert res.error == pytest.approx(want["error"], abs=100 / res.n + 1e-9)  # at most one image apart on another CPU
    assert res.loss == pytest.approx(want["loss"], rel=1e-4)


def test_v1_run_resumes_to_the_end_as_it_would_have(v1_run, v1_data):
    train(resume=v1_run, data=v1_data, quiet=True)
    summary = json.loads((v1_run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["iterations_done"] == 20
    got = read_metrics(v1_run / "metrics.csv")
    want_path = v1_run.parent / "want.csv"
    want_path.write_text(EXPECTED["continued_metrics"])
    want = read_metrics(want_path)
    assert [r["iteration"] for r in got] == [r["iteration"] for r in want] == [5, 10, 15, 20]
    assert got[0] == want[0]  # the row from before the stop is kept as written
    for g, w in zip(got[1:], want[1:]):  # after it: the same training, up to the float rounding of another CPU
        assert g["train_loss"] == pytest.approx(w["train_loss"], rel=1e-3)
        for key, n in (("train_error", 125), ("val_error", 50), ("test_error", 60)):
            assert g[key] == pytest.approx(w[key], abs=100 / n + 1e-6), key


def test_v1_run_with_a_corrupt_checkpoint_says_what_to_do(v1_run, v1_data, capsys):
    (v1_run / "checkpoints" / "ckpt-00000007.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ReslabError, match="no usable checkpoint to resume from; start a new run"):
        train(resume=v1_run, data=v1_data, quiet=True)
