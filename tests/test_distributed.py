"""Distributed training: torchrun + DistributedDataParallel on CPU (gloo), 2 processes, resnet8 on tiny data.

The expensive part is starting torchrun jobs (each imports torch three times), so a handful of jobs are shared
by the tests through module-scoped fixtures: one 2-process run with sync BN (compared with the same config in
one process), and the same run interrupted by SIGTERM to one rank, killed with kill -9, and resumed.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from reslab import ReslabError
from reslab.config import load_config
from reslab.data import augment
from reslab.engine import evaluate, prepare_data, train
from reslab.weights.files import load_checkpoint, load_weights, resumable_checkpoints
from reslab.engine.distributed import DistContext
from reslab.engine.correct import Correctness, read_correct
from reslab.engine.runs import read_metrics
from runcheck import numbers
from reslab.engine.step import training_batch
from reslab.models import create_model

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

# resnet8; 250 training images in global batches of 50 (25 per process) = 5 steps per epoch, so the runs cross
# epoch boundaries (a new shared permutation); 60 test images in evaluation batches of 25 split unevenly over
# the 2 ranks (batches 0 and 2 on rank 0, batch 1 on rank 1).
BASE = {"model.name": "resnet8", "data.val_size": 50, "train.batch_size": 50, "train.iterations": 12,
        "train.eval_every": 3, "train.eval_batch_size": 25, "optim.lr": 0.02, "log.progress": False,
        "train.sync_bn": True}


def overrides(fake_dir, **over):
    d = dict(BASE, **{"data.dir": str(fake_dir)})
    d.update(over)
    return d


def cli_args(fake_dir, runs_dir, **over):
    args = ["--runs-dir", str(runs_dir), "--quiet"]
    for k, v in overrides(fake_dir, **over).items():
        args += ["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return args


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.pop("RESLAB_DATA_DIR", None)
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(k, None)
    return e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ranks(args, n=2):
    """The n workers torchrun would start (same environment variables), without the agent: ~7 s faster."""
    port, procs = free_port(), []
    for rank in range(n):
        e = dict(env(), WORLD_SIZE=str(n), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(n),
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-m", "reslab", "train", *args], env=e, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return procs


def finish(procs, timeout=120):
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [p.returncode for p in procs], outs


def run_ok(cmd, timeout=120):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def only_run(runs_dir: Path) -> Path:
    found = list(Path(runs_dir).iterdir())
    assert len(found) == 1, found  # rank 1 never creates a run directory of its own
    return found[0]



def last_ckpt(run_dir):
    return load_checkpoint(resumable_checkpoints(run_dir / "checkpoints")[0])


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def wait_for(cond, timeout=90, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def newest_iteration(run_dir) -> int:
    done = sorted(int(p.name[5:13]) for p in (run_dir / "checkpoints").glob("ckpt-*.pt.sha256"))
    return done[-1] if done else -1


# ---- shared jobs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_run(fake_dir, tmp_path_factory):
    """An uninterrupted 2-process run with sync BN, started with `reslab train --nproc 2`, i.e. through
    `python -m torch.distributed.run --nproc_per_node=2 -m reslab train ...`."""
    runs_dir = tmp_path_factory.mktemp("ddp")
    r = run_ok([sys.executable, "-m", "reslab", "train", "--nproc", "2", *cli_args(fake_dir, runs_dir), "--sync-bn"])
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m reslab train" in r.stdout
    return only_run(runs_dir)


@pytest.fixture(scope="module")
def single_run(fake_dir, tmp_path_factory):
    """The same config in one process (sync BN is a no-op there)."""
    return train(load_config(None, overrides(fake_dir)), runs_dir=tmp_path_factory.mktemp("single"), quiet=True)


# ---- tests ---------------------------------------------------------------------------------------------------
def test_augment_shards_are_slices_of_the_whole_batch(fake_dir):
    cfg = load_config(None, overrides(fake_dir))
    prep = prepare_data(cfg, torch.device("cpu"))
    idx = torch.randperm(prep.train_x.shape[0], generator=torch.Generator().manual_seed(3))[:50]
    whole_x, whole_y = training_batch(prep.train_x, prep.train_y, idx, prep.normalizer, augment_seed=7)
    parts = [training_batch(prep.train_x, prep.train_y, idx, prep.normalizer, augment_seed=7, shard=s)
             for s in ((0, 25), (25, 50))]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole_x)
    assert torch.equal(torch.cat([p[1] for p in parts]), whole_y)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(ReslabError, match="do not lie in a batch of 5"):
        augment(x, g, shard=(2, 5))


def test_global_batch_must_divide_over_the_processes():
    assert DistContext(world_size=2, rank=1).shard(128) == (64, 128)
    assert DistContext(world_size=4, rank=0).shard(128) == (0, 32)
    with pytest.raises(ReslabError, match=r"train.batch_size=129 is the global batch .* 2 processes"):
        DistContext(world_size=2, rank=0).shard(129)


def test_two_processes_follow_one_process_with_sync_bn(ddp_run, single_run):
    one, two = read_metrics(single_run / "metrics.csv"), read_metrics(ddp_run / "metrics.csv")
    assert [r["iteration"] for r in one] == [r["iteration"] for r in two] == [3, 6, 9, 12]
    # The same images, crops and flips, BN over the global batch, averaged gradients: the processes follow the
    # single-process run up to float rounding (amplified a little by each step on this tiny problem; a
    # 1-thread and a 2-thread single-process run of this config differ by as much).
    for k, (a, b) in enumerate(zip(one, two)):
        tol = 2e-5 if k == 0 else 2e-3
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=tol), (k, a, b)
    assert two[0]["train_error"] == one[0]["train_error"]
    snap = lambda run, i: load_checkpoint(run / "checkpoints" / f"snapshot-{i:08d}.pt")["model_state"]  # noqa: E731
    assert max_diff(snap(ddp_run, 0), snap(single_run, 0)) == 0.0
    # after one step (the snapshot at 0.1 of 12): ~1e-5, as between 1- and 2-thread single-process runs
    assert max_diff(snap(ddp_run, 1), snap(single_run, 1)) < 1e-4
    assert max_diff(last_ckpt(ddp_run)["model_state"], last_ckpt(single_run)["model_state"]) < 1e-2


def test_sharded_evaluation_is_exactly_the_single_process_one(ddp_run, fake_dir):
    ck = last_ckpt(ddp_run)
    model = create_model(ck["model"]["name"], **ck["model"]["kwargs"])
    load_weights(model, ck["model_state"], "ckpt")  # plain keys: no `module.` prefix, SyncBN saved as BN
    prep = prepare_data(load_config(None, overrides(fake_dir)), torch.device("cpu"))
    row = read_metrics(ddp_run / "metrics.csv")[-1]
    te = evaluate(model, prep.test_x, prep.test_y, prep.normalizer, batch_size=25)
    va = evaluate(model, prep.val_x, prep.val_y, prep.normalizer, batch_size=25)
    saved = json.loads((ddp_run / "test_eval.json").read_text())
    assert saved["n"] == te.n == 60
    assert saved["confusion"] == te.confusion.tolist()
    assert saved["error"] == te.error  # exactly: same batches, same weights, counts summed over the ranks
    assert row["test_error"] == pytest.approx(te.error, abs=1e-4)  # metrics.csv keeps 6 significant digits
    assert saved["loss"] == pytest.approx(te.loss, rel=1e-6)
    assert row["val_error"] == pytest.approx(va.error, abs=1e-4)  # metrics.csv keeps 6 significant digits
    # the per-image correctness each rank filled for its batches, gathered: the single-process vector exactly
    stored = read_correct(json.loads((ddp_run / "correct.json").read_text()))
    one = evaluate(model, prep.test_x, prep.test_y, prep.normalizer, batch_size=25, keep_correct=True)
    assert stored["test"] == Correctness.from_tensor("test", prep.digests["test"], one.correct)


def test_only_rank_0_writes(ddp_run):
    log = (ddp_run / "train.log").read_text()
    assert log.count("run ") == 1 and log.count("finished ") == 1, log
    assert log.count(" it ") == 4  # one line per row, not one per rank
    assert "2 processes x cpu (DDP, gloo, 25 images each, sync BN)" in log
    env_json = json.loads((ddp_run / "env.json").read_text())
    assert env_json["world_size"] == 2 and env_json["sync_bn"] is True and env_json["batch_per_process"] == 25
    s = json.loads((ddp_run / "summary.json").read_text())
    assert s["status"] == "finished" and s["iterations_done"] == 12
    ck = last_ckpt(ddp_run)
    assert not any(k.startswith("module.") for k in ck["model_state"])
    assert len(ck["progress_ranks"]) == 2
    leftovers = [p.name for p in ddp_run.rglob("*") if ".tmp-" in p.name]
    assert not leftovers


def test_sigterm_to_one_rank_then_kill_9_then_resume_match_an_uninterrupted_run(ddp_run, fake_dir, tmp_path):
    runs_dir = tmp_path / "cut"
    # 1. SIGTERM to rank 1 only: both ranks agree to stop at the same step, rank 0 checkpoints, both exit 0.
    procs = start_ranks(cli_args(fake_dir, runs_dir) + ["--sync-bn"])
    wait_for(lambda: runs_dir.exists() and any(runs_dir.iterdir())
             and newest_iteration(next(runs_dir.iterdir())) >= 3, what="a checkpoint past iteration 0")
    run = only_run(runs_dir)
    procs[1].send_signal(signal.SIGTERM)
    codes, outs = finish(procs)
    assert codes == [0, 0], outs
    s = json.loads((run / "summary.json").read_text())
    if s["status"] == "finished":  # the run beat the signal: nothing left to test with it
        pytest.skip("the 2-process run finished before SIGTERM arrived")
    assert s["status"] == "interrupted" and 3 <= s["iterations_done"] < 12
    assert newest_iteration(run) == s["iterations_done"]  # one checkpoint, at the step all ranks agreed on
    assert "torchrun --nproc_per_node=N -m reslab train --resume" in outs[0] and not outs[1].strip()

    # 2. Resume, and kill -9 rank 0 (the writer) once it has made progress: rank 1 fails on its next
    #    collective (under torchrun, the agent takes it down); every checkpoint written is whole.
    before = newest_iteration(run)
    procs = start_ranks(["--resume", str(run), "--quiet"])
    wait_for(lambda: newest_iteration(run) > before or procs[0].poll() is not None, what="progress after resume")
    procs[0].kill()
    codes, outs = finish(procs)
    if json.loads((run / "summary.json").read_text())["status"] != "finished":
        assert codes[0] == -signal.SIGKILL and codes[1] != 0, outs

    # 3. Resume again, to the end: the metrics and weights of the uninterrupted run, bit for bit.
    codes, outs = finish(start_ranks(["--resume", str(run), "--quiet"]))
    assert codes == [0, 0], outs
    assert numbers(run) == numbers(ddp_run)
    assert max_diff(last_ckpt(run)["model_state"], last_ckpt(ddp_run)["model_state"]) == 0.0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_nproc_flag_is_checked_and_passes_the_other_arguments(capsys, fake_dir, tmp_path, monkeypatch):
    from reslab import cli
    from reslab.engine import distributed

    assert cli.main(["train", "--nproc", "0"]) == 2
    assert "--nproc 0" in capsys.readouterr().err
    seen = {}
    monkeypatch.setattr(distributed, "launch", lambda n, args: seen.update(n=n, args=args) or 0)
    code = cli.main(["train", "--nproc", "2", "--model", "resnet8", "--data-dir", str(fake_dir), "--sync-bn",
                     "--set", "optim.lr=0.05", "--runs-dir", str(tmp_path)])
    assert code == 0 and seen["n"] == 2
    assert seen["args"] == ["--model", "resnet8", "--data-dir", str(fake_dir), "--runs-dir", str(tmp_path),
                            "--set", "optim.lr=0.05", "--sync-bn"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", "--nproc", "2"]) == 2
    assert "already one of 2" in capsys.readouterr().err
