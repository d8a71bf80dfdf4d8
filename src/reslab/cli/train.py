"""`reslab train`: one model, a new run directory — or `--resume RUN_DIR`; `--nproc N` runs it under torchrun."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from reslab import ReslabError
from reslab.cli.common import add_data_dir
from reslab.config import dump_yaml, find_config, load_config, load_yaml
from reslab.engine import distributed
from reslab.engine.signals import exit_code
from reslab.engine.summary import read_summary
from reslab.engine.trainer import train

DESCRIPTION = ("Train one model under a config (default: the paper's protocol with per-channel normalisation). "
               "Writes RUNS_DIR/<model>-<timestamp>/.")


def configure(p) -> None:
    p.add_argument("--config", default=None, help="YAML config file or built-in name (paper, quick, ...); "
                   "default: built-in defaults (the paper's protocol)")
    p.add_argument("--model", default=None, help="model name (see `reslab models`); sets model.name")
    add_data_dir(p)
    p.add_argument("--runs-dir", default="runs", help="where run directories are created")
    p.add_argument("--epochs", type=float, default=None, help="train this many epochs (sets train.epochs "
                   "and clears train.iterations; a --set of either wins over it)")
    p.add_argument("--seed", type=int, default=None, help="training seed (sets train.seed; default 0)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (sets train.device)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its newest good "
                   "checkpoint (its own config is used; only --device may change)")
    p.add_argument("--init-from", default=None, metavar="RUN|CKPT|NAME", help="start from these weights (a run "
                   "directory, checkpoint, exported folder, or a model name with published weights); a fresh "
                   "optimiser and schedule; keeps their normalisation unless data.normalization is set")
    p.add_argument("--run-name", default=None, help="name the run directory exactly (must not exist); default "
                   "<model>-<timestamp>")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--sync-bn", action="store_true", help="several processes: BN statistics over the global batch "
                   "(sets train.sync_bn; default off, per-process BN as in the paper's 2-GPU runs)")
    p.add_argument("--nproc", type=int, default=None, metavar="N", help="train one model in N processes on this "
                   "machine: runs `python -m torch.distributed.run --nproc_per_node=N -m reslab train ...` with "
                   "the other arguments (one process per GPU, or N CPU processes); --set train.batch_size stays "
                   "the global batch")


def train_argv(a) -> list[str]:
    """The `reslab train` arguments in `a`, minus --nproc: what --nproc hands to each torchrun worker."""
    out = []
    for flag, v in (("--config", a.config), ("--model", a.model), ("--data-dir", a.data_dir),
                    ("--runs-dir", a.runs_dir), ("--epochs", a.epochs), ("--seed", a.seed), ("--device", a.device),
                    ("--resume", a.resume), ("--run-name", a.run_name), ("--init-from", a.init_from)):
        if v is not None:
            out += [flag, str(v)]
    for o in a.overrides:
        out += ["--set", o]
    out += [f for f, on in (("--quiet", a.quiet), ("--print-config", a.print_config), ("--sync-bn", a.sync_bn)) if on]
    return out


def run(a) -> int:
    if a.nproc is not None:
        if a.nproc < 1:
            raise ReslabError(f"--nproc {a.nproc}: must be a positive number of processes")
        if distributed.launched():
            raise ReslabError(f"--nproc {a.nproc}: this process is already one of {os.environ.get('WORLD_SIZE')} "
                              f"started by torchrun; drop --nproc")
        if a.nproc > 1 and not a.print_config:
            return distributed.launch(a.nproc, train_argv(a))
    if a.resume:
        given = [n for n, v in (("--config", a.config), ("--model", a.model), ("--epochs", a.epochs),
                                ("--seed", a.seed), ("--set", a.overrides), ("--data-dir", a.data_dir),
                                ("--sync-bn", a.sync_bn), ("--init-from", a.init_from)) if v]
        if given:
            raise ReslabError(f"--resume continues a run with its own config; drop {', '.join(given)} "
                              f"(only --device may change)")
        return run_on_this_rank(lambda: train(resume=a.resume, device=a.device, quiet=a.quiet))
    overrides = list(a.overrides)
    data_dir = str(Path(a.data_dir).resolve()) if a.data_dir else None  # absolute: resume works from anywhere
    for flag, key in ((a.model, "model.name"), (data_dir, "data.dir"), (a.epochs, "train.epochs"),
                      (a.seed, "train.seed"), (a.device, "train.device"), (a.sync_bn or None, "train.sync_bn")):
        if flag is not None:
            overrides.insert(0, f"{key}={flag}")
    if a.data_dir is not None and not Path(a.data_dir).exists():
        raise ReslabError(f"--data-dir {a.data_dir} does not exist")
    overrides = init_overrides(a.init_from, a.config, overrides)
    cfg = load_config(a.config, overrides)
    if a.quiet:
        cfg.log.progress = False
    if a.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    return run_on_this_rank(lambda: train(cfg, runs_dir=a.runs_dir, quiet=a.quiet, run_name=a.run_name))


def init_overrides(init_from: str | None, config: str | None, overrides: list[str]) -> list[str]:
    """--init-from: model.init_from (a path made absolute), and the source's input normalisation and augmentation
    padding unless data.normalization / data.pad_fill are set on the command line or in the --config file."""
    if init_from is None:
        return overrides
    source = str(Path(init_from).resolve()) if Path(init_from).exists() else init_from
    in_file = (load_yaml(find_config(config)).get("data") or {}) if config is not None else {}
    given = {o.split("=", 1)[0].strip() for o in overrides}
    inherit = [f"data.{k}=init" for k in ("normalization", "pad_fill") if f"data.{k}" not in given and k not in in_file]
    return [f"model.init_from={source}", *inherit, *overrides]


def run_on_this_rank(fn) -> int:
    """Under torchrun, ranks other than 0 name themselves in an error line (exit code 2 everywhere). A run
    stopped by a signal exits 128 + the signal (130 for Ctrl-C, 143 for SIGTERM) once its checkpoint is safe."""
    try:
        run_dir = fn()
    except ReslabError as e:
        if os.environ.get("RANK", "0") != "0":
            print(f"reslab: error (rank {os.environ['RANK']}): {e}", file=sys.stderr)
            return 2
        raise
    s = read_summary(run_dir)
    return exit_code(s.stopped_by) if s.status == "interrupted" else 0
