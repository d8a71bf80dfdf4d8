import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reslab import ReslabError
from reslab.engine import train
from reslab.weights.files import load_checkpoint, resumable_checkpoints, save_checkpoint, sidecar
from reslab.engine.runs import read_metrics
from runcheck import numbers
from reslab.engine.trainer import NonFiniteLoss, run_config

REPO = Path(__file__).resolve().parents[1]



def final_weights(run_dir):
    return load_checkpoint(resumable_checkpoints(run_dir / "checkpoints")[0])["model_state"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_contents(tiny_cfg, tmp_path):
    run = train(tiny_cfg(), runs_dir=tmp_path, quiet=True)
    assert run.parent == tmp_path and run.name.startswith("resnet8-")
    for f in ("config.yaml", "env.json", "metrics.csv", "summary.json", "train.log"):
        assert (run / f).is_file(), f
    rows = read_metrics(run / "metrics.csv")
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    assert set(rows[0]) >= {"train_loss", "train_error", "val_error", "test_error", "lr", "seconds", "images_per_s"}
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "finished" and s["parameters"] == 75_290 and s["best_selected_on"] == "validation"
    # "best" is the row with the lowest *validation* error, never chosen by test error
    assert s["best"]["val_error"] == min(r["val_error"] for r in rows)
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["seed"] == 0
    ck = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ck["row"]["val_error"] == s["best"]["val_error"]
    snaps = sorted(p.name for p in (run / "checkpoints").glob("snapshot-*.pt"))
    assert snaps == ["snapshot-00000000.pt", "snapshot-00000002.pt", "snapshot-00000010.pt", "snapshot-00000020.pt"]
    assert len(resumable_checkpoints(run / "checkpoints")) == 2  # keep_checkpoints


def test_learns_the_tiny_task(tiny_cfg, tmp_path):
    run = train(tiny_cfg(**{"train.iterations": 40}), runs_dir=tmp_path, quiet=True)
    rows = read_metrics(run / "metrics.csv")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_error"] < 50


def test_every_run_gets_a_new_directory(tiny_cfg, tmp_path):
    a = train(tiny_cfg(**{"train.iterations": 5}), runs_dir=tmp_path, quiet=True)
    b = train(tiny_cfg(**{"train.iterations": 5}), runs_dir=tmp_path, quiet=True)
    assert a != b and a.is_dir() and b.is_dir()


def test_same_seed_same_numbers_other_seed_differs(tiny_cfg, tmp_path):
    a = train(tiny_cfg(), runs_dir=tmp_path / "a", quiet=True)
    b = train(tiny_cfg(), runs_dir=tmp_path / "b", quiet=True)
    c = train(tiny_cfg(**{"train.seed": 1}), runs_dir=tmp_path / "c", quiet=True)
    assert numbers(a) == numbers(b)
    assert same_weights(final_weights(a), final_weights(b))
    assert numbers(a) != numbers(c)


@pytest.mark.parametrize("stop_at", [3, 5, 13])  # mid-interval, exactly at an eval, and later
def test_resume_is_exact(tiny_cfg, tmp_path, stop_at):
    ref = train(tiny_cfg(), runs_dir=tmp_path / "ref", quiet=True)
    run = train(tiny_cfg(), runs_dir=tmp_path / "cut", quiet=True, stop_after=stop_at)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    train(resume=run, quiet=True, stop_after=4)  # a second interruption
    train(resume=run, quiet=True)
    assert numbers(run) == numbers(ref)
    assert same_weights(final_weights(run), final_weights(ref))
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_resume_falls_back_past_a_corrupt_checkpoint(tiny_cfg, tmp_path):
    ref = train(tiny_cfg(), runs_dir=tmp_path / "ref", quiet=True)
    run = train(tiny_cfg(), runs_dir=tmp_path / "cut", quiet=True, stop_after=12)
    newest = resumable_checkpoints(run / "checkpoints")[0]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash mid-write of an old-style save
    train(resume=run, quiet=True)
    assert "falling back" in (run / "train.log").read_text()
    assert numbers(run) == numbers(ref)


def test_resume_of_finished_run_changes_nothing(tiny_cfg, tmp_path):
    run = train(tiny_cfg(), runs_dir=tmp_path, quiet=True)
    before = (run / "metrics.csv").read_text()
    train(resume=run, quiet=True)
    assert (run / "metrics.csv").read_text() == before


def test_resume_rejects_non_runs(tmp_path):
    with pytest.raises(ReslabError, match="does not exist"):
        train(resume=tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(ReslabError, match="is not a reslab run"):
        train(resume=tmp_path / "x")


def test_non_finite_loss_fails_clearly_and_keeps_checkpoints(tiny_cfg, tmp_path):
    cfg = tiny_cfg(**{"optim.lr": 1e6, "train.iterations": 40, "optim.weight_decay": 0.0})
    with pytest.raises(NonFiniteLoss, match="iteration"):
        train(cfg, runs_dir=tmp_path / "runs", quiet=True)
    (run,) = (tmp_path / "runs").iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "failed" and "iteration" in s["error"]
    assert resumable_checkpoints(run / "checkpoints")


def test_checkpoint_checksum_detects_corruption(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint({"x": torch.arange(10)}, p)
    assert torch.equal(load_checkpoint(p)["x"], torch.arange(10))
    raw = bytearray(p.read_bytes())
    raw[-30] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ReslabError, match="corrupt"):
        load_checkpoint(p)
    sidecar(p).unlink()
    with pytest.raises(ReslabError, match="no checksum"):
        load_checkpoint(p, require_checksum=True)


def test_constant_warmup_until_error_then_base_lr(tiny_cfg, tmp_path):
    from reslab.config import resolve_schedule
    from reslab.engine.schedule import LRSchedule
    cfg = tiny_cfg(**{"optim.warmup": "constant", "optim.warmup_until_train_error": 80.0,
                      "optim.warmup_lr": 0.01, "optim.warmup_iterations": 400, "optim.warmup_from_depth": 110,
                      "train.iterations": 10000})
    sched = resolve_schedule(cfg, 1000)
    assert LRSchedule(cfg, sched, depth=20).lr(0) == cfg.optim.lr  # only for deep nets, as in the paper
    lrs = LRSchedule(cfg, sched, depth=110)
    assert lrs.lr(0) == 0.01 and lrs.lr(5) == 0.01
    assert not lrs.observe_error(5, 85.0) and lrs.observe_error(6, 79.0)
    assert lrs.lr(6) == cfg.optim.lr and lrs.lr(5) == 0.01
    capped = LRSchedule(cfg, sched, depth=110)
    assert capped.lr(399) == 0.01 and capped.lr(400) == cfg.optim.lr


def test_linear_warmup_and_steps():
    from reslab.config import load_config, resolve_schedule
    from reslab.engine.schedule import LRSchedule
    cfg = load_config(None, ["optim.warmup=linear", "optim.warmup_iterations=10", "train.iterations=100"])
    lrs = LRSchedule(cfg, resolve_schedule(cfg, 45000))
    assert lrs.lr(0) == pytest.approx(0.01) and lrs.lr(9) == pytest.approx(0.1)
    assert lrs.lr(49) == pytest.approx(0.1) and lrs.lr(50) == pytest.approx(0.01) and lrs.lr(75) == pytest.approx(0.001)


def test_linear_schedule_decays_to_zero_after_the_warm_up():
    from reslab.config import load_config, resolve_schedule
    from reslab.engine.schedule import LRSchedule
    cfg = load_config(None, ["optim.schedule=linear", "train.iterations=100"])
    sched = resolve_schedule(cfg, 45000)
    assert sched.milestones == []  # no steps: milestones and gamma are unused
    lrs = LRSchedule(cfg, sched)
    assert [lrs.lr(i) for i in (0, 25, 50, 99)] == pytest.approx([0.1, 0.075, 0.05, 0.001])
    assert lrs.lr(100) == 0.0
    warm = load_config(None, ["optim.schedule=linear", "optim.warmup=linear", "optim.warmup_iterations=10",
                              "train.iterations=110"])
    lrs = LRSchedule(warm, resolve_schedule(warm, 45000))
    assert lrs.lr(0) == pytest.approx(0.01) and lrs.lr(9) == pytest.approx(0.1)  # the ramp, as with steps
    assert [lrs.lr(i) for i in (10, 60, 109)] == pytest.approx([0.1, 0.05, 0.001])  # then 0.1 -> 0 over 100
    const = load_config(None, ["optim.schedule=linear", "optim.warmup=constant", "optim.warmup_lr=0.01",
                               "optim.warmup_until_train_error=80", "optim.warmup_iterations=50",
                               "train.iterations=100"])
    lrs = LRSchedule(const, resolve_schedule(const, 45000), depth=110)
    assert lrs.lr(3) == 0.01 and lrs.observe_error(20, 70.0)
    assert lrs.lr(19) == 0.01 and lrs.lr(20) == pytest.approx(0.1) and lrs.lr(60) == pytest.approx(0.05)
    capped = LRSchedule(const, resolve_schedule(const, 45000), depth=110)  # the error never dropped: the cap ends it
    assert capped.lr(49) == 0.01 and capped.lr(50) == pytest.approx(0.1) and capped.lr(75) == pytest.approx(0.05)


def test_schedule_shape_is_one_of_the_allowed_values():
    from reslab.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"^optim.schedule='cosine' is not allowed; allowed: step, linear$"):
        load_config(None, ["optim.schedule=cosine"])
    # milestones past the end mean nothing to a linear decay, so they are not refused there
    assert load_config(None, ["optim.schedule=linear", "optim.milestones_unit=iteration", "optim.milestones=[500]",
                              "train.iterations=100"]).optim.schedule == "linear"


def test_resume_of_a_linear_schedule_is_exact(tiny_cfg, tmp_path):
    over = {"optim.schedule": "linear", "optim.warmup": "linear", "optim.warmup_iterations": 3}
    ref = train(tiny_cfg(**over), runs_dir=tmp_path / "ref", quiet=True)
    run = train(tiny_cfg(**over), runs_dir=tmp_path / "cut", quiet=True, stop_after=5)  # at an evaluation point
    train(resume=run, quiet=True)
    assert numbers(run) == numbers(ref)
    assert same_weights(final_weights(run), final_weights(ref))
    lrs = [r["lr"] for r in read_metrics(ref / "metrics.csv")]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.05 / 17, rel=1e-4)  # last step: 1/17 of lr


def _cli_train(fake_dir, runs_dir, extra=()):
    return [sys.executable, "-m", "reslab", "train", "--model", "resnet8", "--data-dir", str(fake_dir),
            "--runs-dir", str(runs_dir), "--quiet", "--set", "train.iterations=24", "--set", "train.eval_every=6",
            "--set", "train.batch_size=25", "--set", "data.val_size=50", *extra]


def test_sigint_checkpoints_and_says_how_to_resume(fake_dir, tmp_path):
    runs = tmp_path / "runs"  # not tmp_path itself: the tests' XDG cache lives there too, and may appear first
    cmd = _cli_train(fake_dir, runs, ["--set", "train.iterations=100000", "--set", "train.eval_every=50000"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(runs.glob("*/checkpoints/ckpt-00000000.pt.sha256")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out  # 128 + SIGINT, after the checkpoint: a script can tell a stop from an end
    assert "reslab train --resume" in out
    (run,) = runs.iterdir()
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["iterations_done"] > 0


def _newest_checkpoint(run_dir):
    """Iteration of the newest verified checkpoint in run_dir (-1 if none yet)."""
    names = [p.name for p in Path(run_dir).glob("checkpoints/ckpt-*.pt.sha256")]
    return max((int(n.split("-")[1].split(".")[0]) for n in names), default=-1)


def _wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.02)


def test_kill_9_at_random_moments_then_resume_is_bit_identical(fake_dir, tmp_path):
    """SIGKILL at random moments (start-up, a step, an evaluation, a checkpoint write), each resume killed again,
    and the run still ends bit-identical to one never stopped. The kills are placed by the run's progress, not by
    wall-clock guesses, so a fast machine cannot finish the run before the first kill."""
    longer = ["--set", "train.iterations=150", "--set", "train.eval_every=15"]
    ref = subprocess.run(_cli_train(fake_dir, tmp_path / "ref", longer), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    ref_run = next((tmp_path / "ref").iterdir())
    rng = random.Random(1234)
    proc = subprocess.Popen(_cli_train(fake_dir, tmp_path / "cut", longer), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(lambda: list(tmp_path.glob("cut/*/checkpoints/ckpt-00000000.pt.sha256")), proc)
    run = next((tmp_path / "cut").iterdir())
    kills, seen = 0, _newest_checkpoint(run)
    for k in range(6):
        if k % 2:  # in start-up: before the resumed process has loaded its checkpoint
            time.sleep(rng.uniform(0.0, 0.5))
        else:  # mid-run: once the resume has written a checkpoint of its own, a random moment after it
            _wait_for(lambda: _newest_checkpoint(run) > seen, proc)
            seen = _newest_checkpoint(run)
            time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = subprocess.Popen([sys.executable, "-m", "reslab", "train", "--resume", str(run), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=600) == 0
    assert kills >= 3, f"only {kills} kills landed before the run finished"
    assert numbers(run) == numbers(ref_run)
    assert same_weights(final_weights(run), final_weights(ref_run))


def test_dense_training_curve_adds_up_to_the_metrics_rows(tiny_cfg, tmp_path):
    # log every 2 iterations, evaluate every 5: points at 2, 4, 5 | 6, 8, 10 | ... (an evaluation always closes a
    # window, so no window straddles two metrics rows)
    run = train(tiny_cfg(**{"train.log_every": 2}), runs_dir=tmp_path, quiet=True)
    dense = read_metrics(run / "train_log.csv")
    assert [r["iteration"] for r in dense] == [2, 4, 5, 6, 8, 10, 12, 14, 15, 16, 18, 20]
    batch = 25
    for row in read_metrics(run / "metrics.csv"):  # each metrics row = the size-weighted mean of its windows
        it = row["iteration"]
        start = it - 5
        windows = [(r, r["iteration"] - prev) for r, prev in zip(dense, [0] + [d["iteration"] for d in dense])
                   if start < r["iteration"] <= it]
        n = sum(k for _, k in windows) * batch
        assert sum(r["train_loss"] * k * batch for r, k in windows) / n == pytest.approx(row["train_loss"], rel=1e-5)
        assert sum(r["train_error"] * k * batch for r, k in windows) / n == pytest.approx(row["train_error"], rel=1e-5)


def test_dense_training_curve_defaults_to_five_points_per_evaluation(tiny_cfg, tmp_path):
    run = train(tiny_cfg(**{"train.eval_every": 10}), runs_dir=tmp_path, quiet=True)
    assert [r["iteration"] for r in read_metrics(run / "train_log.csv")] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]


def test_stop_signals_exit_as_shells_expect():
    from reslab.engine.signals import STOP_SIGNALS, exit_code

    assert (exit_code("SIGINT"), exit_code("SIGTERM"), exit_code(None)) == (130, 143, 0)
    assert {signal.Signals(s).name for s in STOP_SIGNALS} >= {"SIGINT", "SIGTERM", "SIGUSR2"}


def test_a_stop_at_an_evaluation_point_does_not_wait_for_the_evaluation(tiny_cfg, tmp_path):
    """Ctrl-C just before an evaluation: checkpoint at once, the evaluation kept pending; the resume runs it first
    and the run ends bit-identical to one never stopped."""
    ref = train(tiny_cfg(), runs_dir=tmp_path / "ref", quiet=True)
    run = train(tiny_cfg(), runs_dir=tmp_path / "cut", quiet=True, stop_after=10)  # eval_every 5: an eval point
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "interrupted" and s["evaluation_pending"] is True and s["iterations_done"] == 10
    assert [r["iteration"] for r in read_metrics(run / "metrics.csv")] == [5]  # 10 not evaluated
    ckpt = load_checkpoint(resumable_checkpoints(run / "checkpoints")[0])
    assert ckpt["iteration"] == 10 and ckpt["pending_eval"] is True
    assert "before its evaluation" in (run / "train.log").read_text()
    train(resume=run, quiet=True, stop_after=1)
    assert [r["iteration"] for r in read_metrics(run / "metrics.csv")] == [5, 10]  # evaluated first on resume
    assert "pending_eval" not in load_checkpoint(resumable_checkpoints(run / "checkpoints")[0])
    train(resume=run, quiet=True)
    assert numbers(run) == numbers(ref)
    assert same_weights(final_weights(run), final_weights(ref))
    mid = train(tiny_cfg(), runs_dir=tmp_path / "mid", quiet=True, stop_after=7)  # between points: nothing pending
    assert json.loads((mid / "summary.json").read_text())["evaluation_pending"] is False


def test_train_leaves_the_callers_config_alone_and_records_what_it_resolved(tiny_cfg, tmp_path):
    from reslab.config import to_dict
    import yaml
    cfg = tiny_cfg(**{"train.amp": "auto", "train.iterations": 4, "optim.milestones_unit": "fraction"})
    given = to_dict(cfg)
    run = train(cfg, runs_dir=tmp_path, quiet=True)
    assert to_dict(cfg) == given  # a study trains many runs from one config: none may see another's choices
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert given["train"]["amp"] == "auto" and recorded["train"]["amp"] in ("none", "bf16")
    assert to_dict(run_config(run)) == recorded  # what train() resolved, read back as a Config
