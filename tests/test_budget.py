"""The throughput probe, the training plan printed before the first step, train.amp=auto, and a study sized by a
time budget (--budget): planned before anything is written, stored, kept on rerun, and fitting the budget."""
import json

import pytest
import torch

from reslab import ReslabError
from reslab.cli import main
from reslab.config import ConfigError, budget_seconds, load_config
from reslab.engine import estimate, train
from reslab.engine.device import choose_amp
from reslab.report import write_report
from reslab.engine.estimate import Speed, evaluations, measure_speed
from reslab.study import budget, plan_degradation
from reslab.study.budget import plan_budget, plan_study
from reslab.study.spec import read_spec
from reslab.study.status import study_status

TINY = ["data.val_size=50", "data.val_subset=null", "data.test_subset=40", "train.batch_size=25",
        "data.train_subset=null", "log.progress=false", "train.epochs=null", "train.iterations=12",
        "train.eval_every=4", "optim.warmup=linear", "optim.warmup_iterations=2"]


def caps(monkeypatch, bf16: bool):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"cpu_name": "Test CPU", "avx512_bf16": bf16,
                                                               "amx_bf16": False})


# ---- train.amp=auto ----------------------------------------------------------------------------------------------

def test_auto_chooses_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    caps(monkeypatch, True)
    amp, why = choose_amp("auto", cpu)
    assert amp == "bf16" and "AVX512_BF16" in why and "Test CPU" in why
    caps(monkeypatch, False)
    amp, why = choose_amp("auto", cpu)
    assert amp == "none" and "no native bf16" in why
    assert choose_amp("bf16", cpu) == ("bf16", None) and choose_amp("none", cpu) == ("none", None)


def test_a_run_records_what_auto_chose_and_a_resume_keeps_it_on_another_cpu(tiny_cfg, tmp_path, monkeypatch,
                                                                              capsys):
    caps(monkeypatch, True)
    run = train(tiny_cfg(**{"train.amp": "auto"}), runs_dir=tmp_path, stop_after=3)
    out = capsys.readouterr().out
    assert "train.amp=auto chose bf16 autocast" in out and "bf16 autocast" in out.split("plan:")[0]
    env = json.loads((run / "env.json").read_text())
    assert env["amp"]["chose"] == "bf16" and env["amp"]["asked"] == "auto"
    assert "amp: bf16" in (run / "config.yaml").read_text()
    caps(monkeypatch, False)  # the CPU model changes between sessions
    train(resume=run)
    out = capsys.readouterr().out
    assert "trains in bf16 (as it started)" in out
    assert "amp: bf16" in (run / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_amp_auto_is_an_allowed_value_and_fp16_on_cpu_is_not():
    assert load_config(None, {"train.amp": "auto"}).train.amp == "auto"
    with pytest.raises(ConfigError, match="train.amp='fp32' is not allowed; allowed: none, bf16, fp16, auto"):
        load_config(None, {"train.amp": "fp32"})


# ---- the probe and the training plan -----------------------------------------------------------------------------

def test_the_probe_measures_without_touching_the_run(tiny_cfg):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    s = measure_speed(tiny_cfg(), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)  # a run probed before its first step stays bit-identical
    assert s.train_images_per_s > 0 and s.eval_images_per_s > 0
    cfg100 = tiny_cfg(**{"data.dataset": "cifar100"})
    assert measure_speed(cfg100, torch.device("cpu")).eval_images_per_s > 0  # 100 outputs


def test_time_model_and_evaluation_count():
    s = Speed(train_images_per_s=100.0, eval_images_per_s=1000.0)
    assert s.run_seconds(10, 50, 2, 500) == pytest.approx(10 * 50 / 100 + 2 * 500 / 1000)
    assert evaluations(20, 5) == 4 and evaluations(22, 5) == 5 and evaluations(20, 5, done=5) == 3
    assert evaluations(20, 5, done=20) == 0 and evaluations(21, 5, done=20) == 1


def test_the_plan_and_its_time_are_printed_before_the_first_step(tiny_cfg, tmp_path, capsys, monkeypatch):
    run = train(tiny_cfg(), runs_dir=tmp_path)
    log = (run / "train.log").read_text()
    plan = next(line for line in log.splitlines() if "plan:" in line)
    assert "20 iterations and 4 evaluations of 110 images: about" in plan and "img/s training" in plan
    assert log.index("plan:") < log.index("epoch ")
    assert "hint:" not in log
    # a long CPU run (here: a slow probe) gets the hint toward the short profile
    monkeypatch.setattr("reslab.engine.trainer.measure_speed", lambda cfg, dev: Speed(0.01, 1.0))
    train(tiny_cfg(), runs_dir=tmp_path, stop_after=1)
    assert "hint: that is long for a CPU; `--config quick`" in capsys.readouterr().out


# ---- --budget ----------------------------------------------------------------------------------------------------

def test_budget_parsing():
    assert [budget_seconds(t) for t in ("15m", "90s", "1h30m", "2h", "15", "1.5h")] == [900, 90, 5400, 7200, 900, 5400]
    for bad in ("15x", "abc", "0m", "-5m", ""):
        with pytest.raises(ConfigError, match="study.budget"):
            budget_seconds(bad)


@pytest.fixture
def fake_speed(monkeypatch):
    calls = []

    def probe(cfg, dev):
        calls.append(cfg.model.name)
        return Speed(train_images_per_s=60.0 if cfg.model.name.endswith("8") else 30.0, eval_images_per_s=2000.0)

    monkeypatch.setattr(budget, "measure_speed", probe)
    return calls


def tiny_spec(fake_dir, *extra):
    return plan_degradation("quick", (8, 14), 1, [*TINY, *extra], str(fake_dir))


def test_budget_plan_fits_the_budget_and_scales_the_schedule(fake_dir, fake_speed):
    spec = tiny_spec(fake_dir)
    plan = plan_budget(spec, 1200.0, "cpu", log=lambda m: None)
    assert sorted(fake_speed) == ["plain14", "plain8", "resnet14", "resnet8"]  # each net measured once
    its, points = plan["iterations"], 3  # the profile's 12 iterations, an evaluation every 4
    assert its % points == 0 and plan["eval_every"] == its // points and plan["profile_iterations"] == 12
    per_it = 2 * 25 / 60 + 2 * 25 / 30
    assert plan["estimate_s"] <= budget.SAFETY * 1200 + 1e-6  # the whole study, start-up and report included
    assert plan["estimate_s"] + points * per_it > budget.SAFETY * 1200  # ... and not much less: the largest that fits
    assert plan["overrides"] == {"train.iterations": its, "train.epochs": None, "train.eval_every": its // points}
    spec.plan = plan
    cfg = spec.run_config(spec.runs[0])
    assert (cfg.train.iterations, cfg.train.epochs, cfg.train.eval_every) == (its, None, its // points)
    assert cfg.optim.milestones == [0.5, 0.75] and cfg.optim.milestones_unit == "fraction"


def test_a_validation_only_study_is_sized_as_the_study_it_stands_for(fake_dir, fake_speed):
    # data.test_subset=0 evaluates no test image, but its plan counts the full test set at every point: the
    # iteration count a validation trial gets is the one the frozen profile, tested, fits in the same budget
    plan = {sub: plan_budget(tiny_spec(fake_dir, f"data.test_subset={sub}"), 1200.0, "cpu", log=lambda m: None)
            for sub in ("0", "null", "40")}
    assert plan["0"]["iterations"] == plan["null"]["iterations"] < plan["40"]["iterations"]


def test_the_plan_counts_the_train_probe_each_run_adds(fake_dir, fake_speed):
    # each of the 4 runs evaluates its train probe once, at the end: 200 images at 2000 img/s = 0.1 s per run
    with_probe, without = (plan_budget(tiny_spec(fake_dir, f"data.train_probe={n}"), 1200.0, "cpu", log=lambda m: None)
                           for n in ("200", "null"))
    assert with_probe["iterations"] == without["iterations"]  # 0.4 s does not change the iteration count here ...
    fixed = [p["estimate_s"] - p["training_s"] for p in (with_probe, without)]
    assert fixed[0] - fixed[1] == pytest.approx(4 * 200 / 2000.0, abs=0.11)  # ... but is in the plan's fixed cost


def test_a_budget_too_small_says_what_would_fit_and_writes_nothing(fake_dir, fake_speed, tmp_path, capsys):
    out = tmp_path / "st"
    args = ["study", "degradation", "--depths", "8,14", "--data-dir", str(fake_dir), "--out", str(out),
            "--budget", "30s"]
    for o in TINY:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget 30s is too short for this study on this machine" in err[0]
    assert "give at least --budget" in err[0]
    assert not out.exists()
    assert main([*args[:-2], "--budget", "15 minutes"]) == 2
    assert "--budget '15 minutes': give a wall time like 15m" in capsys.readouterr().err
    assert not out.exists()


def test_budget_needs_a_schedule_it_can_scale(fake_dir, fake_speed):
    spec = tiny_spec(fake_dir, "optim.milestones_unit=iteration", "optim.milestones=[6, 9]")
    with pytest.raises(ReslabError, match="needs optim.milestones_unit=fraction"):
        plan_budget(spec, 600.0, "cpu", log=lambda m: None)


def test_budgeted_study_stores_its_plan_and_a_rerun_keeps_it(fake_dir, fake_speed, tmp_path, capsys):
    out = tmp_path / "st"
    args = ["study", "degradation", "--depths", "8", "--data-dir", str(fake_dir), "--out", str(out), "--quiet",
            "--no-report"]
    for o in TINY:
        args += ["--set", o]
    assert main([*args, "--budget", "4m"]) == 0
    printed = capsys.readouterr().out
    assert "[study] plan for --budget 4m:" in printed
    stored = read_spec(out)
    its = stored.plan["iterations"]
    assert stored.plan["budget"] == "4m" and its > 12
    for name in ("plain8-s0", "resnet8-s0"):
        s = json.loads((out / "runs" / name / "summary.json").read_text())
        assert s["iterations"] == its and s["status"] == "finished"
    text = open(write_report(out)["md"]).read()
    assert f"- {its:,} iterations at batch 25" in text and "sized by `--budget 4m` when the study started" in text
    assert "precision: " in text
    assert f"lr x0.1 at iterations {round(its / 2):,}, {round(its * 0.75):,}" in text  # the plan's schedule
    cfg = read_spec(out).config()  # what every report figure draws from (the lr schedule too), not the profile's
    assert (cfg.train.iterations, cfg.train.eval_every) == (its, its // 3)
    calls = len(fake_speed)
    # the same study with another budget (or none): the same study, never re-planned
    assert main([*args, "--budget", "6m"]) == 0
    assert "keeping the plan made when the study started" in capsys.readouterr().out
    assert main(args) == 0
    assert len(fake_speed) == calls and read_spec(out).plan == stored.plan
    # an unbudgeted study is not planned by a later --budget either
    plain = tmp_path / "plain"
    plain_args = [*args[:7], str(plain), *args[8:]]
    assert main(plain_args) == 0
    capsys.readouterr()
    assert main([*plain_args, "--budget", "4m"]) == 0
    assert "never re-planned" in capsys.readouterr().out and read_spec(plain).plan is None


def test_status_of_a_planned_study_has_an_eta_before_any_run_trained(fake_dir, fake_speed, tmp_path):
    spec = tiny_spec(fake_dir, "study.budget=10m")
    out = tmp_path / "st"
    spec = plan_study(spec, out, "cpu", log=lambda m: None)
    assert not out.exists()  # planning measures and reads only
    (out / "runs").mkdir(parents=True)
    (out / "study.json").write_text(json.dumps(spec.to_json()))
    states = study_status(out)
    assert all(st.state == "pending" and st.total == spec.plan["iterations"] for st in states)
    assert all(st.eta_s == pytest.approx(spec.plan["iterations"] * 25 / (60 if st.model.endswith("8") else 30))
               for st in states)


def test_probe_cost_is_small_on_the_real_step(tiny_cfg):
    # the probe runs PROBE_WARMUP + PROBE_STEPS training steps and two evaluation batches: nothing more
    calls = []
    orig = estimate.train_step

    def counting(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    estimate.train_step = counting
    try:
        measure_speed(tiny_cfg(), torch.device("cpu"))
    finally:
        estimate.train_step = orig
    assert len(calls) == estimate.PROBE_WARMUP + estimate.PROBE_STEPS


# ---- the shape a budget buys -------------------------------------------------------------------------------------

def hour_threshold(spec) -> tuple[float, float]:
    """The budget (s) at which the hour shape gives exactly HOUR_MIN_EPOCHS epochs per run, and one evaluation
    interval's worth of budget, from the same sums the planner uses (at the fake speeds)."""
    hour = budget.shape_overrides(spec.config(), "quick", "hour")
    fit = budget.measure_fit(type(spec)(spec.kind, spec.profile, spec.base_config, spec.runs, {"overrides": hour}),
                             1.0, "cpu", log=lambda m: None)
    need = budget.HOUR_MIN_EPOCHS * fit.steps_per_epoch
    return (fit.fixed_s + need * fit.per_iteration_s) / budget.SAFETY, fit.points * fit.per_iteration_s / budget.SAFETY


def test_a_budget_buys_the_hour_shape_above_its_threshold_and_the_quick_one_below(fake_dir, fake_speed):
    spec = tiny_spec(fake_dir)
    threshold, step = hour_threshold(spec)
    logs = []
    above = plan_budget(spec, threshold + 2 * step, "cpu", log=logs.append, choose_shape=True)
    assert above["shape"] == "hour" and "at least the 4 it needs" in above["shape_why"]
    o = above["overrides"]
    # the hour profile's keys where the study kept the quick profile's value; what --set moved stays as set
    assert (o["optim.lr"], o["optim.warmup"], o["optim.schedule"]) == (0.1, "none", "linear")
    assert "train.batch_size" not in o and "data.test_subset" not in o and "data.train_subset" not in o
    spec.plan = above
    cfg = spec.run_config(spec.runs[0])
    assert cfg.optim.lr == 0.1 and cfg.train.batch_size == 25 and cfg.train.iterations == above["iterations"]
    assert above["iterations"] >= budget.HOUR_MIN_EPOCHS * (49950 // 25)  # 4 epochs of the 45k(+4,950) split
    shape_lines = [m for m in logs if m.startswith("[study] shape for --budget")]
    assert len(shape_lines) == 1 and ": hour (the hour shape (the full split at batch 128) gives" in shape_lines[0]
    spec.plan, logs = None, []
    below = plan_budget(spec, threshold - 2 * step, "cpu", log=logs.append, choose_shape=True)
    assert below["shape"] == "quick" and "fewer than the 4 it needs" in below["shape_why"]
    assert "optim.lr" not in below["overrides"] and below["profile_iterations"] == 12  # the quick profile's plan
    assert [m for m in logs if m.startswith("[study] shape")][0].split(": ")[1].startswith("quick (")
    # without the choice (an explicit --profile) the budget only scales the profile
    assert "shape" not in plan_budget(spec, threshold + 2 * step, "cpu", log=lambda m: None)


def test_the_cli_chooses_the_shape_only_without_a_profile_and_stores_why(fake_dir, fake_speed, tmp_path, capsys):
    args = ["study", "degradation", "--depths", "8", "--data-dir", str(fake_dir), "--quiet", "--no-report",
            "--out", str(tmp_path / "a"), "--budget", "30s"]
    for o in TINY:
        args += ["--set", o]
    assert main(args) == 2  # too short for either shape: the choice is logged, then the one error line
    out, err = capsys.readouterr()
    assert out.count("[study] shape for --budget 30s: quick (") == 1 and "[study] shape" not in err
    assert "too short" in err and err.count("\n") == 1 and not (tmp_path / "a").exists()
    assert main([*args, "--profile", "quick"]) == 2
    assert "[study] shape" not in capsys.readouterr().out
    # study.json records the shape and why
    spec = plan_study(tiny_spec(fake_dir, "study.budget=20m"), tmp_path / "b", "cpu", log=lambda m: None,
                      choose_shape=True)
    stored = type(spec).from_json(json.loads(json.dumps(spec.to_json()))).plan
    assert stored["shape"] == "quick" and "fewer than the 4 it needs" in stored["shape_why"]
    assert "the quick shape, " in budget.plan_line(stored)
