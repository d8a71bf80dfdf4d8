import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reslab.config import (ConfigError, dump_yaml, find_config, from_dict, load_config, parse_override,
                           resolve_schedule, to_dict)


def test_defaults_are_the_paper_protocol():
    c = load_config()
    assert (c.train.batch_size, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert c.train.iterations == 64000 and c.data.val_size == 5000 and c.model.shortcut == "A"
    s = resolve_schedule(c, 45000)
    assert s.milestones == [32000, 48000] and s.iterations == 64000 and s.steps_per_epoch == 351


def test_paper_yaml_is_exactly_the_paper():
    c = load_config("paper")
    assert c.data.normalization == "pixel" and c.optim.milestones_unit == "iteration"
    assert resolve_schedule(c, 45000).milestones == [32000, 48000]
    c110 = load_config("paper", ["model.name=resnet110"])
    assert c110.optim.warmup == "constant" and c110.optim.warmup_lr == 0.01
    assert c110.optim.warmup_until_train_error == 80 and c110.optim.warmup_from_depth == 110


def test_hour_yaml_is_the_full_split_at_the_paper_batch():
    from reslab.data import n_eval_images, n_train_images
    c = load_config("hour")
    assert (c.train.batch_size, c.optim.lr, c.train.amp) == (128, 0.1, "auto")
    assert n_train_images(c.data) == 45000 and n_eval_images(c.data) == (5000, 10000)
    assert c.optim.milestones == [0.5, 0.75] and c.optim.milestones_unit == "fraction"  # a --budget scales it
    assert c.optim.schedule in ("step", "linear") and resolve_schedule(c, 45000).iterations == 6 * 351
    assert n_eval_images(load_config("hour", ["data.test_subset=0"]).data) == (5000, 0)  # validation only
    with pytest.raises(ConfigError, match="without test evaluation needs a validation split"):
        load_config("hour", ["data.test_subset=0", "data.val_size=0"])


def test_overrides_and_types():
    c = load_config(None, ["optim.lr=0.05", "optim.weight_decay=5e-4", "optim.milestones=[0.3, 0.6]",
                           "data.train_subset=5000", "train.device=cpu", "log.progress=false"])
    assert c.optim.lr == 0.05 and c.optim.weight_decay == 5e-4 and c.optim.milestones == [0.3, 0.6]
    assert c.data.train_subset == 5000 and c.train.device == "cpu" and c.log.progress is False
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 1e-3)


@pytest.mark.parametrize("override, needle", [
    ("optim.lrr=0.1", r"unknown config key 'optim.lrr'; did you mean optim.lr\?"),
    ("trian.epochs=1", "did you mean train"),
    ("model.name=resnet21", r"model.name: .*6n\+2"),
    ("model.name=vgg", "unknown model 'vgg'"),
    ("optim.lr=0", r"optim.lr=0.0 is not allowed; must be > 0"),
    ("optim.lr=-0.1", "must be > 0"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.batch_size=1.5", "wrong type; expected integer"),
    ("train.iterations=-5", "positive integer"),
    ("train.log_every=-1", r"train.log_every=-1 is not allowed; must be >= 0"),
    ("optim.milestones=[0.75, 0.5]", "strictly increasing"),
    ("optim.milestones=[0.5, 1.5]", r"fractions of training must lie in \(0, 1\)"),
    ("model.shortcut=D", "allowed: A, B, C"),
    ("data.normalization=imagenet", "allowed: channel, pixel, none"),
    ("train.device=gpu", "allowed: auto, cpu, cuda"),
    ("train.amp=fp8", "allowed: none, bf16, fp16"),
    ("optim.schedule=cosine", "allowed: step, linear"),
    ("data.test_subset=-1", r"must be a positive integer, 0 \(no test evaluation\) or null"),
    ("data.val_subset=0", "must be a positive integer or null"),
    ("log.progress=maybe", "expected true/false"),
    ("optim=1", "is a section"),
    ("lr", "is not key=value"),
])
def test_bad_values_give_one_clear_line(override, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_milestones_beyond_the_end():
    with pytest.raises(ConfigError, match="before the end of training"):
        load_config(None, ["optim.milestones_unit=iteration", "optim.milestones=[100, 200]", "train.iterations=150"])
    c = load_config("paper", ["train.epochs=1"])  # absolute 32k/48k cannot fit one epoch
    with pytest.raises(ConfigError, match="milestones_unit=fraction"):
        resolve_schedule(c, 45000)


def test_epochs_override_iterations_and_scale_fraction_milestones():
    c = load_config(None, ["train.epochs=2"])
    s = resolve_schedule(c, 5000)
    assert s.steps_per_epoch == 39 and s.iterations == 78 and s.milestones == [39, 58]


def test_unknown_yaml_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="built-in: "):
        find_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(unknown)


def test_yaml_round_trip():
    c = load_config("paper", ["model.name=plain56", "train.seed=3"])
    again = from_dict(yaml.safe_load(dump_yaml(c)))
    assert to_dict(again) == to_dict(c)


KEYS = {
    "optim.lr": st.one_of(st.floats(-1, 1, allow_nan=False), st.integers(-3, 3), st.text(max_size=3)),
    "train.batch_size": st.one_of(st.integers(-5, 300), st.floats(-1, 10, allow_nan=False), st.booleans()),
    "optim.milestones": st.lists(st.floats(-0.5, 1.5, allow_nan=False), max_size=4),
    "model.name": st.sampled_from(["resnet20", "plain56", "resnet21", "resnet", "vgg11", "plain8"]),
    "model.shortcut": st.sampled_from(["A", "B", "C", "D", ""]),
    "data.train_subset": st.one_of(st.none(), st.integers(-10, 10_000)),
    "train.epochs": st.one_of(st.none(), st.floats(-2, 5, allow_nan=False)),
    "train.iterations": st.one_of(st.none(), st.integers(-2, 100)),
    "optim.momentum": st.floats(-1, 1, allow_nan=False),
    "bogus.key": st.integers(),
    "optim.warmup": st.sampled_from(["none", "linear", "constant", "cosine"]),
}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(KEYS)), st.none(), max_size=6).flatmap(
    lambda d: st.fixed_dictionaries({k: KEYS[k] for k in d})))
def test_random_overrides_either_fail_cleanly_or_round_trip(over):
    try:
        c = load_config(None, over)
    except ConfigError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
        return
    assert to_dict(from_dict(yaml.safe_load(dump_yaml(c)))) == to_dict(c)
    assert c.optim.lr > 0 and c.train.batch_size > 0


def test_the_run_length_set_last_wins():
    # a --set of train.iterations on a profile that spells its length in epochs trains those iterations
    c = load_config("quick", ["train.iterations=3000"])
    assert (c.train.iterations, c.train.epochs) == (3000, None)
    assert resolve_schedule(c, 8000).iterations == 3000
    assert "epochs: null" in dump_yaml(c)  # one meaning in the run's config.yaml
    # and the other way round, and a key given twice counts where it was given last
    c = load_config("paper", ["train.epochs=2"])
    assert (c.train.iterations, c.train.epochs) == (None, 2.0)
    c = load_config(None, ["train.epochs=1", "train.iterations=30", "train.epochs=2"])
    assert (c.train.iterations, c.train.epochs) == (None, 2.0)
    c = load_config(None, {"train.epochs": 1, "train.iterations": 30})
    assert (c.train.iterations, c.train.epochs) == (30, None)


def test_a_config_file_wins_over_the_defaults_key_by_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 3\noptim:\n  lr: 0.02\n")
    c = load_config(f, ["optim.lr=0.04"])
    assert (c.train.iterations, c.train.epochs, c.optim.lr) == (None, 3.0, 0.04)
    # a config.yaml written before the rule held both; its epochs (listed after iterations) still win, as before
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  iterations: 64000\n  epochs: 2\n")
    assert resolve_schedule(load_config(old), 5000).iterations == 78
