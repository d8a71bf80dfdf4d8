"""Faults a long run meets in practice: full disks, swapped checkpoints, bad archives, bad paths."""
import errno

import pytest

from reslab import ReslabError
from reslab.cli import main
from reslab.weights import files as ckpt_mod
from reslab.engine import runs as runs_mod
from reslab.engine import train
from reslab.weights.files import load_checkpoint, resumable_checkpoints, save_checkpoint
from runcheck import numbers




def _fail_after(n, real, exc):
    calls = {"n": 0}

    def wrapper(*a, **k):
        calls["n"] += 1
        if calls["n"] > n:
            raise exc
        return real(*a, **k)
    return wrapper


def test_disk_full_during_checkpoint_keeps_previous_and_resumes_exactly(tiny_cfg, tmp_path, monkeypatch):
    ref = train(tiny_cfg(), runs_dir=tmp_path / "ref", quiet=True)
    monkeypatch.setattr(ckpt_mod, "atomic_write_bytes",
                        _fail_after(14, ckpt_mod.atomic_write_bytes, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ReslabError, match="No space left on device"):
        train(tiny_cfg(), runs_dir=tmp_path / "cut", quiet=True)
    monkeypatch.undo()
    run = next((tmp_path / "cut").iterdir())
    assert not list((run / "checkpoints").glob(".*tmp*"))  # no temp files left behind
    good = resumable_checkpoints(run / "checkpoints")
    assert good and load_checkpoint(good[0], require_checksum=True)
    train(resume=run, quiet=True)
    assert numbers(run) == numbers(ref)


def test_disk_full_on_metrics_write_is_one_clear_error(tiny_cfg, tmp_path, monkeypatch):
    # the first two writes create the run's empty metrics.csv and train_log.csv; the third is at an evaluation
    monkeypatch.setattr(runs_mod, "write_metrics",
                        _fail_after(2, runs_mod.write_metrics, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ReslabError, match=r"cannot write to .*No space left.*--resume"):
        train(tiny_cfg(), runs_dir=tmp_path, quiet=True)


def test_disk_full_while_creating_the_run_is_one_clear_error(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(runs_mod, "write_metrics",
                        _fail_after(1, runs_mod.write_metrics, OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ReslabError, match=r"cannot write to .*No space left on device.*nothing was trained") as e:
        train(tiny_cfg(), runs_dir=tmp_path, quiet=True)
    assert "\n" not in str(e.value)


def test_checkpoint_of_another_model_is_refused(tiny_cfg, tmp_path, capsys):
    run = train(tiny_cfg(**{"train.iterations": 5}), runs_dir=tmp_path, quiet=True)
    ck = load_checkpoint(run / "checkpoints" / "best.pt")
    ck["model"]["name"] = "resnet14"  # weights of resnet8 under the name of another net
    ck.pop("format"), ck.pop("version")
    save_checkpoint(ck, tmp_path / "swapped.pt")
    code = main(["eval", str(tmp_path / "swapped.pt"), "--data-dir", ck["config"]["data"]["dir"]])
    err = capsys.readouterr().err
    assert code == 2 and "different model" in err and err.count("\n") == 1


def test_resume_with_a_foreign_checkpoint_is_refused(tiny_cfg, tmp_path):
    a = train(tiny_cfg(**{"train.iterations": 5}), runs_dir=tmp_path / "a", quiet=True)
    b = train(tiny_cfg(**{"train.iterations": 10, "model.name": "resnet14"}), runs_dir=tmp_path / "b", quiet=True,
              stop_after=3)
    src = resumable_checkpoints(a / "checkpoints")[0]
    dst = b / "checkpoints" / "ckpt-99999999.pt"
    dst.write_bytes(src.read_bytes())
    (b / "checkpoints" / "ckpt-99999999.pt.sha256").write_bytes(
        (a / "checkpoints" / (src.name + ".sha256")).read_bytes())
    with pytest.raises(ReslabError, match="checkpoint of resnet8, but the run trains resnet14"):
        train(resume=b, quiet=True)


def test_runs_dir_that_cannot_be_created(tiny_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReslabError, match="cannot be created"):
        train(tiny_cfg(), runs_dir=blocker / "runs", quiet=True)


@pytest.mark.parametrize("content, needle", [(b"\x1f\x8b\x08\x00garbage", "not a readable"),
                                             (b"plain text", "not a readable")])
def test_bad_archive_via_cli_exits_2_and_writes_nothing(tmp_path, capsys, content, needle):
    d = tmp_path / "data"
    d.mkdir()
    (d / "cifar-10-python.tar.gz").write_bytes(content)
    code = main(["train", "--data-dir", str(d), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_failed_run_in_a_study_is_reported_and_the_study_carries_on(tmp_path, fake_dir):
    from reslab.report import write_report
    from reslab.study import plan_degradation, run_study
    from reslab.study.results import load_study
    over = ["data.val_size=50", "data.val_subset=null", "data.test_subset=null", "data.train_subset=null",
            "train.batch_size=25", "train.iterations=30", "train.eval_every=10", "optim.warmup=none",
            "log.progress=false", "optim.lr=1e6", "optim.weight_decay=0"]
    spec = plan_degradation("quick", (8,), overrides=over, data_dir=str(fake_dir))
    logs = []
    assert run_study(spec, tmp_path / "s", quiet=True, log=logs.append)  # a failed run still ends the study
    write_report(tmp_path / "s")
    st = load_study(tmp_path / "s")
    assert any("failed" in m for m in logs)
    assert {r.status for r in st.runs} <= {"failed", "finished"} and "failed" in {r.status for r in st.runs}
    assert (tmp_path / "s" / "report" / "report.md").is_file()
