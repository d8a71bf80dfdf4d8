"""Trackers (reslab/trackers): what TensorBoard and MLflow hold is read back with their own readers and equals the
CSV files; W&B's calls are checked against a stand-in module (its offline files have no reader); a failing
tracker never costs the run anything; old configs with log.tensorboard still open."""
import json
import sys
import types
from pathlib import Path

import pytest

from reslab import ReslabError, config
from reslab.config import LOGGERS, from_dict, load_config
from reslab.engine import train
from reslab.engine.runs import read_metrics
from reslab.trackers import TRACKERS, TrackedRun, log_study_report


def csv_pairs(run: Path) -> dict:
    """{(tag, step): value} of every number metrics.csv and train_log.csv hold, tagged as the trackers tag them,
    plus the final row's train-probe error (measured once, at the end: kept in summary.json, not in the CSV)."""
    out = {}
    for name, prefix in (("metrics.csv", "metrics"), ("train_log.csv", "train_log")):
        for row in read_metrics(run / name):
            for k, v in row.items():
                if k != "iteration" and v is not None:
                    out[(f"{prefix}/{k}", row["iteration"])] = v
    final = json.loads((run / "summary.json").read_text())["final"]
    if final.get("train_probe_error") is not None:
        out[("metrics/train_probe_error", final["iteration"])] = final["train_probe_error"]
    return out


def study_layout(tmp_path: Path) -> Path:
    """STUDY/runs/ with a study.json, so that a run trained there belongs to the study (its tracker group)."""
    (tmp_path / "mystudy" / "runs").mkdir(parents=True)
    (tmp_path / "mystudy" / "study.json").write_text("{}")
    return tmp_path / "mystudy" / "runs"


def test_the_tracker_names_agree_with_the_config():
    assert set(TRACKERS) == set(LOGGERS)
    with pytest.raises(ReslabError, match=r"train.loggers=\['tensorbord'\] is not allowed; allowed: a list of "):
        load_config(None, {"train.loggers": ["tensorbord"]})


def test_old_configs_with_log_tensorboard_open_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(config, "_told", set())
    on = from_dict({"log": {"progress": True, "tensorboard": True}})
    off = from_dict({"log": {"tensorboard": False}}, on)
    both = from_dict({"log": {"tensorboard": False}, "train": {"loggers": ["mlflow", "tensorboard"]}})
    assert on.train.loggers == ["tensorboard"] and off.train.loggers == []
    assert both.train.loggers == ["mlflow", "tensorboard"]  # the new key wins
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "log.tensorboard is now part of train.loggers" in err


def test_tensorboard_events_read_back_equal_the_csv_files_across_a_resume(tiny_cfg, tmp_path):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    cfg = tiny_cfg(**{"train.loggers": ["tensorboard"], "train.iterations": 30, "train.eval_every": 10,
                      "train.log_every": 3})
    run = train(cfg, runs_dir=tmp_path, quiet=True, stop_after=14)  # stopped between evaluations
    run = train(resume=run, quiet=True)
    acc = ea_mod.EventAccumulator(str(run / "tensorboard"), size_guidance={ea_mod.SCALARS: 0})
    acc.Reload()
    events = {(tag, ev.step): ev.value for tag in acc.Tags()["scalars"] for ev in acc.Scalars(tag)}
    want = csv_pairs(run)
    assert set(events) == set(want)
    assert len(want) > 50 and {t for t, _ in want} >= {"metrics/test_error", "train_log/train_loss"}
    for key, v in want.items():
        assert events[key] == pytest.approx(v, rel=1e-4, abs=1e-6), key


def test_mlflow_sqlite_store_holds_params_every_metric_step_and_artifacts(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[mlflow]')")
    from mlflow.tracking import MlflowClient
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs_dir = study_layout(tmp_path)
    cfg = tiny_cfg(**{"train.loggers": ["mlflow"], "train.iterations": 20, "train.eval_every": 5})
    run = train(cfg, runs_dir=runs_dir, run_name="resnet8-s0", quiet=True, stop_after=7)
    run = train(resume=run, quiet=True)  # the same MLflow run goes on
    ids = json.loads((run / "trackers.json").read_text())["mlflow"]
    assert ids["tracking_uri"] == f"sqlite:///{tmp_path / 'mystudy' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=ids["tracking_uri"])
    exp = client.get_experiment_by_name("mystudy")
    found = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in found] == [ids["run_id"]]
    mr = found[0]
    assert mr.info.run_name == "resnet8-s0" and mr.info.status == "FINISHED"
    assert mr.data.params["optim.lr"] == "0.05" and mr.data.params["model.name"] == "resnet8"
    logged = {}
    for key in mr.data.metrics:
        for m in client.get_metric_history(mr.info.run_id, key):
            logged[(key, m.step)] = m.value
    want = csv_pairs(run)
    assert set(logged) == set(want)
    assert all(logged[k] == pytest.approx(v, rel=1e-4, abs=1e-6) for k, v in want.items())
    assert "summary.json" in [a.path for a in client.list_artifacts(mr.info.run_id)]
    # the end of a study: the report's files, in a run named "report" of the study's experiment
    report = tmp_path / "mystudy" / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    who = TrackedRun(report, "report", "mystudy", tmp_path / "mystudy", "reslab", None)
    log_study_report(["tensorboard", "mlflow"], who, [report / "report.md"], print)
    rep = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "report"]
    assert [a.path for a in client.list_artifacts(rep[0].info.run_id, "report")] == ["report/report.md"]


class StandInWandb:
    """Records what reslab asks of the wandb module (the calls of wandb.init and of the run it returns)."""

    def __init__(self, fail_log_after: int | None = None):
        self.calls, self.fail_log_after, self.logs = [], fail_log_after, 0
        self.module = types.ModuleType("wandb")
        self.module.init = self.init
        self.module.Settings = lambda **kw: ("Settings", kw)
        self.module.Artifact = None

    def init(self, **kw):
        self.calls.append(("init", kw))
        run = types.SimpleNamespace(name=kw["name"])
        run.config = types.SimpleNamespace(update=lambda d, **k: self.calls.append(("config", d)))
        run.summary = types.SimpleNamespace(update=lambda d: self.calls.append(("summary", d)))
        run.log = self.log
        run.finish = lambda exit_code: self.calls.append(("finish", exit_code))
        return run

    def log(self, values, step):
        self.logs += 1
        if self.fail_log_after is not None and self.logs > self.fail_log_after:
            raise ConnectionError("stand-in: the network went away")
        self.calls.append(("log", values, step))


def test_wandb_gets_config_every_point_and_row_summary_and_resumes_the_same_run(tiny_cfg, tmp_path, monkeypatch):
    fake = StandInWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    cfg = tiny_cfg(**{"train.loggers": ["wandb"], "log.project": "proj"})
    run = train(cfg, runs_dir=study_layout(tmp_path), run_name="resnet8-s0", quiet=True, stop_after=7)
    run = train(resume=run, quiet=True)
    inits = [c[1] for c in fake.calls if c[0] == "init"]
    stored = json.loads((run / "trackers.json").read_text())["wandb"]["id"]
    assert len(inits) == 2 and all(i["id"] == stored for i in inits)
    assert {(i["project"], i["group"], i["name"], i["resume"]) for i in inits} == {("proj", "mystudy", "resnet8-s0",
                                                                                   "allow")}
    configs = [c[1] for c in fake.calls if c[0] == "config"]
    assert len(configs) == 1 and configs[0]["train.loggers"] == ["wandb"] and configs[0]["optim.lr"] == 0.05
    logged = {(k, c[2]): v for c in fake.calls if c[0] == "log" for k, v in c[1].items()}
    assert logged == pytest.approx(csv_pairs(run), rel=1e-5)  # the CSV keeps 6 significant digits
    assert [c[1] for c in fake.calls if c[0] == "finish"] == [1, 0]  # interrupted, then finished
    summary = [c[1] for c in fake.calls if c[0] == "summary"]
    assert len(summary) == 1 and summary[0]["status"] == "finished"


def test_a_tracker_raising_inside_log_leaves_the_run_finished_and_its_csvs_complete(tiny_cfg, tmp_path, monkeypatch):
    fake = StandInWandb(fail_log_after=3)
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    run = train(tiny_cfg(**{"train.loggers": ["wandb"]}), runs_dir=tmp_path, quiet=True)
    ref = train(tiny_cfg(), runs_dir=tmp_path / "ref", quiet=True)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    def untimed(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s", "wall_seconds")} for r in rows]

    assert untimed(read_metrics(run / "metrics.csv")) == untimed(read_metrics(ref / "metrics.csv"))
    assert read_metrics(run / "train_log.csv") == read_metrics(ref / "train_log.csv")
    warned = [ln for ln in (run / "train.log").read_text().splitlines() if "warning" in ln]
    assert len(warned) == 1 and "wandb failed in log_point (ConnectionError: stand-in" in warned[0]
    assert fake.logs == 4 and ("finish", 1) in fake.calls  # no retry per step; closed as it was dropped


def test_a_tracker_that_cannot_start_is_one_warning_and_the_run_goes_on(tiny_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    run = train(tiny_cfg(**{"train.loggers": ["wandb"]}), runs_dir=tmp_path, quiet=True)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    out = capsys.readouterr().out
    assert out.count("warning") == 1 and "pip install -e \".[wandb]\"" in out


def test_wandb_offline_smoke(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = train(tiny_cfg(**{"train.loggers": ["wandb"]}), runs_dir=tmp_path, quiet=True)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert "warning" not in (run / "train.log").read_text()
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]["id"]
    assert list((run / "wandb").glob(f"offline-run-*-{run_id}"))
