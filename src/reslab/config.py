"""Typed run configuration: dataclass defaults < YAML file < `--set section.key=value` overrides.

The setting given last wins, key by key: a `--set` over the YAML file (a study's profile), the file over the
defaults. `train.iterations` and `train.epochs` are two spellings of one setting, the run's length: setting
one to a number clears the other, so a config always holds exactly one of them.

A config is plain data (nested dataclasses of numbers, strings and lists); `to_dict`/`from_dict` round-trip it
through YAML. Everything is validated before any work starts: unknown keys (with a "did you mean"), wrong
types and impossible values each give one line that names the key, the bad value and what is allowed.

The built-in defaults are the paper's CIFAR protocol (Sec. 4.2) except for normalisation, which defaults to
per-channel mean/std; `configs/paper.yaml` switches to the paper's per-pixel mean subtraction and spells the
schedule out in iterations.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reslab import ReslabError
from reslab.data import DATASETS, NORMALIZATIONS, PAD_FILLS
from reslab.models import family_members, model_info
from reslab.models.resnet import SHORTCUTS, STEMS

CONFIG_DIR = Path(__file__).parent / "configs"
SCHEDULES = ("step", "linear")  # the lr schedule shapes (optim.schedule), implemented in reslab.engine.schedule


class ConfigError(ReslabError):
    pass


@dataclass
class ModelConfig:
    name: str = "resnet20"          # any name from `reslab models`
    shortcut: str = "A"             # A: zero-pad identity (paper's CIFAR choice), B: projection where shapes change, C:
                                    # projection everywhere
    zero_init_residual: bool = False  # zero the last BN gamma of every residual branch (not in the paper)
    stem: typing.Optional[str] = None   # ImageNet-style nets only: cifar (3x3, stride 1) | imagenet (7x7/2 + max-pool);
                                        # null = the model's default (cifar)
    width: typing.Optional[int] = None  # ImageNet-style nets only: first-stage planes (stages x1, x2, x4, x8); null =
                                        # the model's default (64)
    init_from: typing.Optional[str] = None  # start from these weights (a run dir, checkpoint, exported folder, or a
                                            # model name with published weights); null = fresh init


@dataclass
class DataConfig:
    dataset: str = "cifar10"                  # cifar10 | cifar100 (fine labels; the paper reports CIFAR-10 only)
    dir: typing.Optional[str] = None          # None: $RESLAB_DATA_DIR, else the user cache (downloads if empty)
    val_size: int = 5000                      # held out of the 50k training images; 5000 = the paper's 45k/5k; 0 =
                                              # train on all 50k
    split_seed: int = 0                       # the validation split (and subsets) depend on this, not on train.seed
    train_subset: typing.Optional[int] = None  # class-balanced seeded subset of the training split (short runs)
    val_subset: typing.Optional[int] = None   # evaluate on a class-balanced subset of the validation split
    test_subset: typing.Optional[int] = None  # evaluate on a class-balanced subset of the 10k test set; 0 = no test
                                              # evaluation at all (validation-only trials: nothing to fish on test)
    train_probe: typing.Optional[int] = 5000  # at the final evaluation, this many class-balanced training images (at
                                              # most the whole training split) in eval mode without augmentation: the
                                              # paired training-error verdicts; null = none
    normalization: str = "channel"            # channel: per-channel mean/std; pixel: the paper's per-pixel mean
                                              # subtraction; none; init: the one model.init_from's weights were trained
                                              # with
    augment: bool = True                      # pad 4 + random 32x32 crop + horizontal flip (the paper's)
    pad: int = 4
    pad_fill: str = "mean"                    # mean: padding is zero after normalisation (the paper's Torch lineage);
                                              # black: pixel 0 before it (torchvision's RandomCrop; akamaster); init: as
                                              # model.init_from's weights were trained


@dataclass
class OptimConfig:
    lr: float = 0.1
    schedule: str = "step"                    # step: lr *= gamma at each milestone (the paper's); linear: after any
                                              # warm-up, lr decays linearly from lr to 0 at the end of training
                                              # (milestones and gamma unused; Li et al. 2020, "Budgeted Training")
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    milestones: typing.List[float] = field(default_factory=lambda: [0.5, 0.75])  # lr *= gamma at each
    milestones_unit: str = "fraction"         # fraction (of all iterations) | iteration | epoch
    gamma: float = 0.1
    warmup: str = "none"                      # none | linear (ramp from 0 over warmup_iterations) | constant
                                              # (warmup_lr, see below)
    warmup_iterations: int = 0                # linear: ramp length; constant: longest warm-up allowed
    warmup_lr: float = 0.01                   # constant warm-up lr (the paper's ResNet-110 uses 0.01)
    warmup_until_train_error: typing.Optional[float] = None  # constant: end warm-up once training error (%) is below
                                                             # this
    warmup_from_depth: int = 0                # apply warm-up only to nets at least this deep (paper: 110)


@dataclass
class TrainConfig:
    batch_size: int = 128
    iterations: typing.Optional[int] = 64000   # the paper: 64k iterations
    epochs: typing.Optional[float] = None     # epochs x (train images // batch); setting one of iterations and
                                              # epochs to a number clears the other (the one set last wins)
    seed: int = 0
    device: str = "auto"                      # auto | cpu | cuda | cuda:N | mps
    deterministic: bool = True                # deterministic kernels (free on CPU; slower cuDNN on GPU)
    channels_last: bool = True                # NHWC memory format: measured ~15% faster on CPU, faster on GPUs
    amp: str = "none"                         # none (fp32) | bf16 | fp16 (a GradScaler; GPUs) | auto: bf16 where the
                                              # device has it natively (bf16 GPUs; CPUs with AVX512_BF16 or AMX), else
                                              # fp32. A run records what auto chose (config.yaml, env.json) and a
                                              # resume keeps it
    compile: bool = False                     # torch.compile the model
    tf32: bool = False                        # CUDA: TF32 inside fp32 matmuls/convolutions (Ampere+; faster, 10-bit
                                              # mantissa); false: fp32 is fp32, as on the CPU. env.json records it
    cuda_graph: str = "off"                   # off | on | auto: the training step captured as one CUDA graph and
                                              # replayed (engine/graph.py; CUDA, fp32 or bf16, one process); auto:
                                              # where it can be, else eager. Not yet run on a GPU: see docs/gpu.md
    eval_batch_size: int = 250                # measured fastest on CPU (cache-sized batches)
    eval_every: int = 0                       # evaluate (and log a metrics row) every N iterations; 0 = every epoch
    log_every: int = 0                        # training loss/error into train_log.csv every N iterations (free: no
                                              # evaluation); 0 = five points per evaluation interval
    keep_checkpoints: int = 2                 # newest resumable checkpoints kept (older ones deleted after a good save)
    snapshots: typing.List[float] = field(default_factory=lambda: [0.0, 0.1, 0.5, 1.0])  # weights kept at these
                                                                                         # fractions of training
    # Several processes (torchrun): batch_size stays the GLOBAL batch, split evenly over the processes.
    # sync_bn: BN statistics over the global batch (SyncBatchNorm), so N x B/N trains like 1 x B up to rounding.
    # Off by default: the paper trained its CIFAR nets "with a mini-batch size of 128 on two GPUs", where
    # data-parallel Torch computes BN per GPU (64 images each); per-process BN needs no communication inside
    # the forward/backward pass; and 64 images estimate BN statistics well. Turn it on when the per-process
    # batch gets small (many GPUs) or to follow a single-device run. No effect in a single process.
    sync_bn: bool = False
    # Experiment trackers the run also logs to (the CSV files are always written): any of LOGGERS. Each needs its
    # extra (pip install -e ".[tensorboard]" / ".[mlflow]" / ".[wandb]"); one that is missing or fails is switched
    # off with one warning line and the run goes on. Not part of what makes two studies the same.
    loggers: typing.List[str] = field(default_factory=list)


@dataclass
class LogConfig:
    progress: bool = True                     # tqdm bar per epoch
    project: str = "reslab"                   # W&B project; MLflow experiment of runs outside a study (a study is
                                              # one W&B group and one MLflow experiment, named after its directory)
    mlflow_uri: typing.Optional[str] = None   # null: $MLFLOW_TRACKING_URI, else sqlite:///<study or runs dir>/mlflow.db


@dataclass
class LauncherConfig:
    """Where `reslab study` runs its grid (the study's flags --launcher, --partition ... set these). `reslab train`
    ignores it, and it is not part of what makes two studies the same."""
    name: str = "local"                       # local: this machine (--devices); submitit: one cluster job per run
    cluster: str = "slurm"                    # submitit's executor: slurm, or local (each job a process here)
    partition: typing.Optional[str] = None    # SLURM partition (null: the cluster's default)
    gpus_per_run: int = 1                     # 0 on a CPU cluster; more than 1 is refused (one process per run)
    cpus_per_run: int = 8
    timeout_min: int = 240                    # each job's time limit; SIGUSR2 90 s before it, then a requeue
    max_parallel: int = 0                     # jobs running at once (SLURM's array parallelism); 0 = all
    max_requeues: int = 3                     # submitit's cap on requeues after a time limit
    slurm_extra: typing.List[str] = field(default_factory=list)  # more sbatch options, KEY=VALUE (account=..., qos=...)


@dataclass
class StudyConfig:
    """How `reslab study` sizes its grid (the study's --budget sets it). `reslab train` ignores it, and it is not
    part of what makes two studies the same: the plan it leads to is stored in the study and kept on rerun."""
    budget: typing.Optional[str] = None       # e.g. 15m, 1h30m, 900s: choose train.iterations so that the whole study
                                              # (training, evaluations, report) ends within this wall time on this
                                              # machine, from a throughput probe of each net; null = the profile's
                                              # schedule


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    study: StudyConfig = field(default_factory=StudyConfig)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
# Every closed set of allowed values; the sets themselves live with the code that implements them.
CHOICES = {
    "model.shortcut": SHORTCUTS,
    "data.normalization": (*NORMALIZATIONS, "init"),
    "data.pad_fill": (*PAD_FILLS, "init"),
    "data.dataset": tuple(DATASETS),
    "optim.schedule": SCHEDULES,
    "optim.milestones_unit": ("fraction", "iteration", "epoch"),
    "optim.warmup": ("none", "linear", "constant"),
    "train.amp": ("none", "bf16", "fp16", "auto"),
    "train.cuda_graph": ("off", "on", "auto"),
    "launcher.name": ("local", "submitit"),
    "launcher.cluster": ("slurm", "local"),
}
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# one setting spelled two ways: the run's length; a number in one clears the other
RUN_LENGTH = {"train.iterations": "epochs", "train.epochs": "iterations"}
LOGGERS = ("tensorboard", "mlflow", "wandb")  # implemented in reslab.trackers (one module each)
_told: set[str] = set()  # old keys already explained in this process (one line each, not one per config read)


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in hints}


def _field_types(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    if origin in (list, typing.List):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, str(tp))


def _coerce(value, tp, key: str):
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _coerce(value, inner, key)
    bad = ConfigError(f"{key}={value!r} has the wrong type; expected {_type_name(tp)}")
    if origin in (list, typing.List):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, typing.get_args(tp)[0], key) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if isinstance(value, bool) and {"on", "off"} <= set(CHOICES.get(key, ())):
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _unknown(key: str, allowed: list[str]) -> ConfigError:
    guess = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f"did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{guess[0]}? " if guess else ""
    return ConfigError(f"unknown config key {key!r}; {hint}allowed: {', '.join(allowed)}")


def from_dict(d: dict | None, base: Config | None = None) -> Config:
    """Merge a nested dict into a copy of `base` (default: the built-in defaults), checking keys and types."""
    cfg = dataclasses.replace(base) if base else Config()
    cfg = from_flat(flatten(d or {}), cfg)
    return cfg


def flatten(d: dict, prefix: str = "") -> dict[str, typing.Any]:
    out = {}
    if not isinstance(d, dict):
        raise ConfigError(f"config {prefix or 'file'} must be a mapping of sections, got {type(d).__name__}")
    for k, v in d.items():
        key = f"{prefix}{k}"
        if not prefix and isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def from_flat(flat: dict[str, typing.Any], base: Config | None = None) -> Config:
    """Apply {"optim.lr": 0.05, ...} to a copy of `base`, in the dict's order (see RUN_LENGTH)."""
    sections = {name: dataclasses.replace(getattr(base or Config(), name)) for name in SECTIONS}
    classes = _section_classes()
    for key, value in flat.items():
        if "." not in key:
            if key in SECTIONS:
                raise ConfigError(f"config key {key!r} is a section; set one of its keys, e.g. {key}."
                                  f"{dataclasses.fields(classes[key])[0].name}=...")
            raise _unknown(key, list(SECTIONS))
        if key == "log.tensorboard":  # configs, runs and studies made before train.loggers (which wins)
            if "train.loggers" not in flat:
                sections["train"].loggers = _old_tensorboard_key(value, sections["train"].loggers)
            continue
        sec, name = key.split(".", 1)
        if sec not in SECTIONS:
            raise _unknown(sec, list(SECTIONS))
        types = _field_types(classes[sec])
        if name not in types:
            raise _unknown(key, list(types))
        setattr(sections[sec], name, _coerce(value, types[name], key))
        if key in RUN_LENGTH and value is not None:
            setattr(sections["train"], RUN_LENGTH[key], None)
    return Config(**sections)


def _old_tensorboard_key(value, loggers: list[str]) -> list[str]:
    """`log.tensorboard: true|false` (configs, runs and studies made before train.loggers) as train.loggers."""
    flag = _coerce(value, bool, "log.tensorboard")
    if "log.tensorboard" not in _told:
        _told.add("log.tensorboard")
        print(f"reslab: note: log.tensorboard is now part of train.loggers; read log.tensorboard={str(flag).lower()} "
              f"as {'adding' if flag else 'leaving out'} tensorboard", file=sys.stderr)
    rest = [x for x in loggers if x != "tensorboard"]
    return rest + ["tensorboard"] if flag else rest


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[str, typing.Any]:
    """'optim.lr=0.05' -> ('optim.lr', 0.05). Values are YAML: 1e-4, true, null, [0.5, 0.75]."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not key=value (e.g. --set optim.lr=0.05)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML reads "1e-4" as a string; accept it as the number the user meant.
        try:
            value = float(value) if re.fullmatch(r"[-+]?\d*\.?\d+([eE][-+]?\d+)", value) else value
        except ValueError:
            pass
    return key.strip(), value


def find_config(name_or_path: str, flag: str = "--config") -> Path:
    """A config file path, or the name of a built-in one ('paper', 'quick', ...); `flag` names the option the
    user gave it with, for the error."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    builtin = CONFIG_DIR / (name_or_path if name_or_path.endswith(".yaml") else name_or_path + ".yaml")
    if builtin.is_file():
        return builtin
    names = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    guess = difflib.get_close_matches(name_or_path, names, n=1)
    raise ConfigError(f"{flag} {name_or_path!r} is neither a file nor a built-in config; "
                      + (f"did you mean {guess[0]}? " if guess else "") + f"built-in: {', '.join(names)}")


def profile_name(profile: str) -> str:
    """The short name of a profile: a built-in name as given, a YAML file by its stem ('my.yaml' -> 'my')."""
    return Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile


def load_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            d = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                flag: str = "--config") -> Config:
    """Defaults, then the YAML file (a path or a built-in name), then overrides, the last given winning;
    validated."""
    cfg = Config()
    if path:
        cfg = from_dict(load_yaml(find_config(str(path), flag)), cfg)
    if overrides:
        pairs = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        flat: dict[str, typing.Any] = {}
        for key, value in pairs:
            flat.pop(key, None)  # a key given twice counts where it was given last
            flat[key] = value
        cfg = from_flat(flat, cfg)
    validate(cfg)
    return cfg


def _err(key, value, allowed) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; {allowed}")


def budget_seconds(text: str) -> float:
    """'15m', '90s', '1h30m', '2h' (a bare number: minutes) -> seconds; a one-line ConfigError otherwise."""
    m = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?\s*",
                     str(text))
    bare = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*", str(text))
    if bare:
        seconds = float(bare.group(1)) * 60
    elif m and any(m.groups()):
        h, mi, se = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mi * 60 + se
    else:
        raise _err("study.budget", text, "a wall time like 15m, 1h30m or 900s")
    if seconds <= 0:
        raise _err("study.budget", text, "must be more than 0")
    return seconds


def validate(cfg: Config) -> Config:
    """Checks that need no data. `resolve_schedule` does the ones that need the training-set size."""
    for key, allowed in CHOICES.items():
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        if v not in allowed:
            raise _err(key, v, f"allowed: {', '.join(allowed)}")
    _validate_model(cfg.model)
    for key in ("normalization", "pad_fill"):
        if getattr(cfg.data, key) == "init" and not cfg.model.init_from:
            others = ", ".join(a for a in CHOICES[f"data.{key}"] if a != "init")
            raise _err(f"data.{key}", "init", f"takes the convention of model.init_from's weights; set "
                       f"model.init_from, or use {others}")
    _validate_numbers(cfg)
    if cfg.study.budget is not None:
        budget_seconds(cfg.study.budget)
    for name in cfg.train.loggers:
        if name not in LOGGERS:
            raise _err("train.loggers", cfg.train.loggers, f"allowed: a list of {', '.join(LOGGERS)} (or [])")
    if len(set(cfg.train.loggers)) != len(cfg.train.loggers):
        raise _err("train.loggers", cfg.train.loggers, "name each tracker once")
    return cfg


def _validate_model(m: ModelConfig) -> None:
    """The model name and the options only some models take, as the model registry describes them."""
    try:
        info = model_info(m.name)
    except ReslabError as e:
        raise ConfigError(f"model.name: {e}") from None
    if m.stem is not None and m.stem not in STEMS:
        raise _err("model.stem", m.stem, f"allowed: {', '.join(STEMS)}, or null (the model's default)")
    if m.width is not None and m.width < 1:
        raise _err("model.width", m.width, "must be a positive integer, or null (the model's default, 64)")
    for key, v in (("stem", m.stem), ("width", m.width)):
        if v is not None and not info.accepts(key):
            takers = family_members("imagenet-style")
            raise _err(f"model.{key}", v, f"only the ImageNet-style nets take it ({', '.join(takers)}), not "
                       f"{m.name}; set it to null")


def _validate_numbers(cfg: Config) -> None:
    t, o, d = cfg.train, cfg.optim, cfg.data
    if not DEVICE_RE.fullmatch(t.device):
        raise _err("train.device", t.device, "allowed: auto, cpu, cuda, cuda:N, mps")
    positive = {"optim.lr": o.lr, "train.batch_size": t.batch_size, "train.eval_batch_size": t.eval_batch_size,
                "optim.gamma": o.gamma, "data.pad": d.pad + 1, "train.keep_checkpoints": t.keep_checkpoints,
                "launcher.cpus_per_run": cfg.launcher.cpus_per_run, "launcher.timeout_min": cfg.launcher.timeout_min}
    for key, v in positive.items():
        if v <= 0:
            raise _err(key, v if key != "data.pad" else d.pad, "must be > 0" if key != "data.pad" else "must be >= 0")
    if t.iterations is None and t.epochs is None:
        raise ConfigError("train.iterations and train.epochs are both null; set one (e.g. --set train.epochs=1)")
    if t.iterations is not None and t.iterations <= 0:
        raise _err("train.iterations", t.iterations, "must be a positive integer")
    if t.epochs is not None and t.epochs <= 0:
        raise _err("train.epochs", t.epochs, "must be > 0")
    lc = cfg.launcher
    for key, v in {"optim.momentum": o.momentum, "optim.weight_decay": o.weight_decay,
                   "data.val_size": d.val_size, "train.eval_every": t.eval_every, "train.log_every": t.log_every,
                   "optim.warmup_iterations": o.warmup_iterations, "launcher.gpus_per_run": lc.gpus_per_run,
                   "launcher.max_parallel": lc.max_parallel, "launcher.max_requeues": lc.max_requeues}.items():
        if v < 0:
            raise _err(key, v, "must be >= 0")
    if o.gamma > 1:
        raise _err("optim.gamma", o.gamma, "must be in (0, 1]")
    for key in ("train_subset", "val_subset", "train_probe"):
        v = getattr(d, key)
        if v is not None and v <= 0:
            raise _err(f"data.{key}", v, "must be a positive integer or null")
    if d.test_subset is not None and d.test_subset < 0:
        raise _err("data.test_subset", d.test_subset, "must be a positive integer, 0 (no test evaluation) or null")
    if d.test_subset == 0 and not d.val_size:
        raise _err("data.test_subset", 0, "a run without test evaluation needs a validation split "
                   "(data.val_size > 0)")
    ms = o.milestones
    if any(b <= a for a, b in zip(ms, ms[1:])):
        raise _err("optim.milestones", ms, "must be strictly increasing")
    if any(m <= 0 for m in ms):
        raise _err("optim.milestones", ms, "must be > 0")
    if o.milestones_unit == "fraction" and any(m >= 1 for m in ms):
        raise _err("optim.milestones", ms, "fractions of training must lie in (0, 1); "
                   "or set optim.milestones_unit=iteration")
    if (o.schedule == "step" and o.milestones_unit == "iteration" and t.epochs is None and t.iterations
            and any(m >= t.iterations for m in ms)):
        raise _err("optim.milestones", ms, f"every milestone must be before the end of training "
                   f"(train.iterations={t.iterations})")
    if any(not 0 <= s <= 1 for s in t.snapshots):
        raise _err("train.snapshots", t.snapshots, "fractions of training in [0, 1]")
    if o.warmup == "linear" and o.warmup_iterations <= 0:
        raise _err("optim.warmup_iterations", o.warmup_iterations, "a linear warm-up needs warmup_iterations > 0")
    if o.warmup == "constant":
        if o.warmup_lr <= 0:
            raise _err("optim.warmup_lr", o.warmup_lr, "must be > 0")
        if o.warmup_until_train_error is None and o.warmup_iterations <= 0:
            raise ConfigError("optim.warmup=constant needs optim.warmup_until_train_error or optim.warmup_iterations")
        if o.warmup_until_train_error is not None and not 0 < o.warmup_until_train_error <= 100:
            raise _err("optim.warmup_until_train_error", o.warmup_until_train_error, "a percentage in (0, 100]")
    if t.amp == "fp16" and t.device == "cpu":
        raise _err("train.amp", t.amp, "fp16 needs a GPU; on CPU use bf16 or none")


@dataclass
class Schedule:
    """The schedule in iterations, resolved once the training-set size is known."""

    steps_per_epoch: int
    iterations: int
    milestones: list[int]                     # where a step schedule divides the lr ([] for optim.schedule=linear)
    snapshots: list[int]


def resolve_schedule(cfg: Config, n_train: int) -> Schedule:
    t, o = cfg.train, cfg.optim
    if t.batch_size > n_train:
        raise _err("train.batch_size", t.batch_size, f"must be at most the {n_train} training images")
    spe = n_train // t.batch_size  # the last partial batch of each epoch is dropped (equal batches for BN)
    if t.epochs is not None:
        total = max(1, round(t.epochs * spe))
    elif t.iterations is not None:
        total = t.iterations
    else:  # validate() refuses this; a config that skipped it gets the same message
        raise ConfigError("train.iterations and train.epochs are both null; set one (e.g. --set train.epochs=1)")
    if o.schedule == "linear":  # no steps: the lr decays to 0 at `total`
        ms = []
    elif o.milestones_unit == "fraction":
        ms = [round(m * total) for m in o.milestones]
    elif o.milestones_unit == "epoch":
        ms = [round(m * spe) for m in o.milestones]
    else:
        ms = [int(m) for m in o.milestones]
    if any(m >= total for m in ms):
        raise _err("optim.milestones", o.milestones, f"every milestone must be before the end of training "
                   f"({total} iterations = {total / spe:.2f} epochs of {spe}); "
                   f"use optim.milestones_unit=fraction to scale with the run length")
    snaps = sorted({min(total, round(s * total)) for s in t.snapshots})
    return Schedule(spe, total, ms, snaps)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
