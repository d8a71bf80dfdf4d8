import json
import shutil
import subprocess
import sys

import pytest

from reslab import ReslabError
from reslab.cli import main
from reslab.engine.runs import read_metrics
from reslab.report import write_report
from reslab.study.results import load_study
from reslab.report.degradation import all_verdicts
from reslab.study import plan_degradation, run_study
from reslab.study.degradation import parse_depths

TINY = ["data.val_size=50", "data.val_subset=null", "data.test_subset=40", "train.batch_size=25", "train.iterations=12",
        "train.eval_every=4", "optim.milestones=[0.5, 0.75]", "optim.milestones_unit=fraction",
        "optim.warmup=none", "data.train_subset=null", "log.progress=false"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, fake_dir_module):
    out = tmp_path_factory.mktemp("study") / "s"
    spec = plan_degradation("quick", (8, 14), seeds=1, overrides=TINY, data_dir=str(fake_dir_module))
    assert run_study(spec, out, quiet=True, log=lambda m: None)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def fake_dir_module(tmp_path_factory):
    from reslab.data.synthetic import write_fake_cifar
    d = tmp_path_factory.mktemp("fake")
    write_fake_cifar(d, per_batch=60, test=60)
    return d


def test_study_trains_the_grid_and_writes_every_part_of_the_report(tiny_study):
    names = sorted(p.name for p in (tiny_study / "runs").iterdir())
    assert names == ["plain14-s0", "plain8-s0", "resnet14-s0", "resnet8-s0"]
    for n in names:
        assert json.loads((tiny_study / "runs" / n / "summary.json").read_text())["status"] == "finished"
    rep = tiny_study / "report"
    for f in ("report.md", "report.html", "figure6.png", "pairs.png", "lr.png", "confusion.png"):
        assert (rep / f).is_file() and (rep / f).stat().st_size > 1000, f
    md = (rep / "report.md").read_text()
    for needle in ("## Verdicts", "Degradation: plain14", "Residual cure at depth 8", "Residual cure at depth 14",
                   "## Results", "best val err", "## Ranking", "Paper protocol only", "8.75" if False else "Table 6",
                   "## Per-class test accuracy", "airplane", "Confusion matrix of the best model", "figure6.png"):
        assert needle in md, needle
    html = (rep / "report.html").read_text()
    # Fig. 6, pairs, lr, confusion, plus the analysis figures (responses, gradients)
    assert html.count("data:image/png;base64,") == 6 and "Verdicts" in html


def test_protocol_is_identical_across_the_grid(tiny_study):
    cfgs = {}
    for run in (tiny_study / "runs").iterdir():
        import yaml
        c = yaml.safe_load((run / "config.yaml").read_text())
        name = c["model"].pop("name")
        cfgs[name] = c
    first = next(iter(cfgs.values()))
    assert all(c == first for c in cfgs.values())  # only the model name differs


def test_rerun_skips_finished_runs_and_keeps_files(tiny_study, fake_dir_module):
    before = {p: p.stat().st_mtime_ns for p in (tiny_study / "runs").rglob("metrics.csv")}
    logs = []
    spec = plan_degradation("quick", (8, 14), seeds=1, overrides=TINY, data_dir=str(fake_dir_module))
    run_study(spec, tiny_study, quiet=True, log=logs.append)
    assert sum("finished, skipped" in m for m in logs) == 4
    assert {p: p.stat().st_mtime_ns for p in (tiny_study / "runs").rglob("metrics.csv")} == before


def test_interrupted_study_resumes_only_what_is_left(tmp_path, fake_dir_module):
    spec = plan_degradation("quick", (8,), seeds=1, overrides=TINY, data_dir=str(fake_dir_module))
    out = tmp_path / "s"
    from reslab.engine import train
    from reslab.study.spec import open_study
    open_study(spec, out).release()
    # plain8 half done (as after a kill), resnet8 never started
    train(spec.run_config(spec.runs[0]), runs_dir=out / "runs", run_name=spec.runs[0].name, quiet=True,
          stop_after=5)
    logs = []
    run_study(spec, out, quiet=True, log=logs.append)
    assert any("plain8-s0: resuming" in m for m in logs) and any("resnet8-s0: training" in m for m in logs)
    assert load_study(out).runs[0].status == "finished"


def test_a_different_study_in_the_same_dir_is_refused(tiny_study, fake_dir_module):
    spec = plan_degradation("quick", (8, 20), seeds=1, overrides=TINY, data_dir=str(fake_dir_module))
    with pytest.raises(ReslabError, match="different study"):
        run_study(spec, tiny_study, quiet=True)


def test_a_study_made_before_a_config_field_existed_still_resumes(tiny_study, fake_dir_module, tmp_path):
    # study.json written by an older reslab: no train.log_every in its base config
    old = tmp_path / "old"
    shutil.copytree(tiny_study, old)
    meta = json.loads((old / "study.json").read_text())
    del meta["base_config"]["train"]["log_every"]
    (old / "study.json").write_text(json.dumps(meta))
    spec = plan_degradation("quick", (8, 14), seeds=1, overrides=TINY, data_dir=str(fake_dir_module))
    logs = []
    run_study(spec, old, quiet=True, log=logs.append)
    assert sum("finished, skipped" in m for m in logs) == 4
    # ... but a changed value is still a different study
    meta["base_config"]["train"]["log_every"] = 7
    (old / "study.json").write_text(json.dumps(meta))
    with pytest.raises(ReslabError, match=r"its train.log_every: 7 there, 0 now"):  # names the key and both values
        run_study(spec, old, quiet=True)


def test_training_curves_use_the_dense_log(tiny_study):
    from reslab.report.figures import curve
    m = load_study(tiny_study).model("resnet8")
    dense_its, _ = curve(m, "train_error")
    eval_its, _ = curve(m, "test_error")
    assert set(eval_its) < set(dense_its)  # every evaluation point, and the points between them
    m.runs[0].train_log = []  # a run made before train_log.csv existed: back to the metrics rows
    assert curve(m, "train_error")[0] == eval_its


def _flip(study_dir, tmp_path, edits):
    """Copy a study and rewrite final numbers in its summaries (without the runs' per-image correctness, so the
    verdicts are computed from these numbers, as for a study made before it was stored)."""
    dst = tmp_path / "flipped"
    shutil.copytree(study_dir, dst)
    for f in dst.glob("runs/*/correct.json"):
        f.unlink()
    for name, (train_err, test_err) in edits.items():
        p = dst / "runs" / name / "summary.json"
        s = json.loads(p.read_text())
        s["final"]["train_error"], s["final"]["test_error"] = train_err, test_err
        p.write_text(json.dumps(s))
    return dst


def test_verdicts_follow_the_numbers(tiny_study, tmp_path):
    # One seed: the yardstick is the sampling noise of the images each number was measured on (training error:
    # the last interval's 100 images, about ±12 points here; test error: 40 images, about ±18).
    good = _flip(tiny_study, tmp_path / "a", {"plain8-s0": (10.0, 32.0), "plain14-s0": (60.0, 61.0),
                                               "resnet8-s0": (5.0, 60.0), "resnet14-s0": (20.0, 10.0)})
    v = {x.claim + str(i): x for i, x in enumerate(all_verdicts(load_study(good)))}
    texts = [x.text for x in v.values()]
    assert "Degradation: plain14 ends with higher training error than plain8 (60.0% vs 10.0%) — reproduced." in texts
    assert any("resnet14 ends below plain14 by 40.0 points" in t and t.endswith("reproduced.") for t in texts)
    assert any(t.startswith("Deeper ResNets do better: resnet14 ends with lower test error") for t in texts)
    # 5 points of training error on 100 images each: within the noise, never "reproduced"
    assert any(t.startswith("Residual cure at depth 8: resnet8 ends below plain8 by 5.0 points") and
               "not separable at this budget" in t for t in texts)
    bad = _flip(tiny_study, tmp_path / "b", {"plain8-s0": (60.0, 61.0), "plain14-s0": (10.0, 32.0),
                                              "resnet8-s0": (5.0, 10.0), "resnet14-s0": (60.0, 70.0)})
    texts = [x.text for x in all_verdicts(load_study(bad))]
    assert any(t.startswith("Degradation: plain14 ends with lower (or equal)") and t.endswith("not reproduced.")
               for t in texts)
    assert any("resnet14 does not end below plain14" in t and "not reproduced" in t for t in texts)
    assert any("resnet14 does not beat resnet8" in t for t in texts)
    # and the written report carries the flipped verdict
    write_report(bad)
    assert "— not reproduced." in (bad / "report" / "report.md").read_text()


def test_parse_depths_and_defaults():
    assert parse_depths(None, "quick") == (20, 56) and parse_depths(None, "hour") == (20, 56)
    assert parse_depths(None, "paper") == (20, 32, 44, 56)
    assert parse_depths("56,20", "quick") == (20, 56)
    with pytest.raises(ReslabError, match="6n\\+2"):
        parse_depths("20,21", "quick")
    with pytest.raises(ReslabError, match="comma-separated"):
        parse_depths("twenty", "quick")


def test_cli_study_and_report(tmp_path, fake_dir_module, capsys):
    args = ["study", "degradation", "--depths", "8", "--data-dir", str(fake_dir_module), "--out",
            str(tmp_path / "st"), "--quiet"]
    for o in TINY:
        args += ["--set", o]
    assert main(args) == 0
    assert (tmp_path / "st" / "report" / "report.html").is_file()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "st")]) == 0
    err = capsys.readouterr().err  # what it is doing, on stderr, once the study has been checked
    assert err == f"building the report of {tmp_path / 'st'} (degradation study, 2 runs) ...\n"
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # a bad study: the error alone
    assert "not a reslab study" in err and err.count("\n") == 1


def test_a_validation_only_study_never_evaluates_on_test(tmp_path, fake_dir_module, capsys):
    out = tmp_path / "val"
    args = ["study", "degradation", "--depths", "8", "--data-dir", str(fake_dir_module), "--out", str(out), "--quiet"]
    for o in [*TINY, "data.test_subset=0"]:
        args += ["--set", o]
    assert main(args) == 0
    assert "validation-only (data.test_subset=0): no test evaluation, so no report" in capsys.readouterr().out
    assert not (out / "report").exists()
    for run in (out / "runs").iterdir():
        rows = read_metrics(run / "metrics.csv")
        assert rows and all(r["val_error"] is not None and r["test_error"] is None for r in rows)
        assert not (run / "test_eval.json").exists()
        log = (run / "train.log").read_text()
        assert "/ 0 test images" in log and "| test" not in log and "test error" not in log
    assert main(["report", str(out)]) == 2
    assert "is a validation-only study (data.test_subset=0)" in capsys.readouterr().err


def test_study_on_two_cpu_worker_processes(tmp_path, fake_dir_module):
    """--devices spreads runs over worker processes (here two CPU workers); results match in-process runs."""
    args = [sys.executable, "-m", "reslab", "study", "degradation", "--depths", "8", "--data-dir",
            str(fake_dir_module), "--out", str(tmp_path / "par"), "--devices", "cpu,cpu", "--quiet"]
    for o in TINY:
        args += ["--set", o]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    st = load_study(tmp_path / "par")
    assert [x.status for x in st.runs] == ["finished", "finished"]


def test_a_stopped_study_exits_as_its_interrupted_run(tmp_path):
    from reslab.cli.study import stopped_exit_code

    for name, summary in (("a", {"status": "finished"}), ("b", {"status": "interrupted", "stopped_by": "SIGTERM"})):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text(json.dumps(summary))
    assert stopped_exit_code(tmp_path) == 143
    (tmp_path / "runs" / "b" / "summary.json").write_text(json.dumps({"status": "interrupted", "stopped_by": None}))
    assert stopped_exit_code(tmp_path) == 0  # stopped by stop_after (tests), not by a signal


# ---- study kinds: one protocol, registered once (reslab.study.kind) ----------------------------------------------

def test_every_registered_study_kind_has_a_report_and_every_report_a_kind():
    from reslab.report.build import REPORTS
    from reslab.study import KINDS
    assert set(KINDS) == set(REPORTS) == {"degradation", "imagenet-style"}
    assert all(KINDS[name].name == name == REPORTS[name].KIND for name in KINDS)


def test_a_registered_kind_gets_its_command_and_its_plan_is_asked(monkeypatch, capsys):
    """The CLI dispatches through KINDS: a kind registered there (and nowhere else) has `reslab study NAME`, its
    own arguments, and its plan is asked with the shared options and its own."""
    from reslab.study import KINDS, PlanRequest, StudyKind
    asked = []

    def plan(r: PlanRequest):
        asked.append(r)
        raise ReslabError(f"toy plan asked: profile={r.profile} seeds={r.seeds} size={r.options['size']}")

    toy = StudyKind("toy", help="a toy kind", description="A toy.", profile_help="tiny", default_profile="tiny",
                    add_arguments=lambda q: q.add_argument("--size", default="3"), plan=plan)
    monkeypatch.setitem(KINDS, "toy", toy)
    assert main(["study", "toy", "--seeds", "2", "--size", "5", "--set", "train.seed=1"]) == 2
    assert "toy plan asked: profile=tiny seeds=2 size=5" in capsys.readouterr().err
    assert asked[0].overrides == ("train.seed=1",) and asked[0].data_dir is None


def test_a_kind_without_a_report_is_refused_by_reslab_report(tmp_path):
    from reslab.study import open_study
    spec = plan_degradation("quick", (8,), seeds=1)
    spec.kind = "toy"  # a kind registered in reslab.study but not in reslab.report.build.REPORTS
    with open_study(spec, tmp_path / "s"):
        pass
    with pytest.raises(ReslabError, match="of kind 'toy', which has no report; known: degradation, imagenet-style"):
        write_report(tmp_path / "s")
