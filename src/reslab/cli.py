"""`reslab ...`: a thin command line over the Python API (every command is a few calls into reslab.*)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reslab import ReslabError, __version__

EPILOG = "Docs: README.md. Every error that you can fix exits with code 2 and one line saying what to change."


def _add_data_dir(p):
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding cifar-10-python.tar.gz or cifar-10-batches-py/ (default: $RESLAB_DATA_DIR, "
                        "else ~/.cache/reslab/data, downloading the official archive if it is empty)")


def _add_study_options(q, kind: str) -> None:
    """Options every study command shares (seeds, devices, data, output, overrides, report, quiet)."""
    q.add_argument("--seeds", type=int, default=1, help="repeat every model with this many seeds (train.seed, +1, ...)")
    q.add_argument("--devices", default=None, help="comma-separated devices, one run per device at a time in "
                   "separate processes (e.g. cuda:0,cuda:1); default: train.device of the profile")
    _add_data_dir(q)
    q.add_argument("--out", default=None, help=f"study directory (default: studies/{kind}-<profile>); an "
                   "existing one holding the same study is resumed, never overwritten")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key for every run of the study")
    q.add_argument("--no-report", action="store_true", help="train only; build the report later with reslab report")
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reslab", description="Plain vs residual networks on CIFAR-10, as in "
                                 "He et al. 2016.", epilog=EPILOG,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("train", help="train one model (a new run directory), or resume one", formatter_class=fmt,
                       description="Train one model under a config (default: the paper's protocol with per-channel "
                                   "normalisation). Writes RUNS_DIR/<model>-<timestamp>/.")
    p.add_argument("--config", default=None, help="YAML config file or built-in name (paper, quick, ...); "
                   "default: built-in defaults (the paper's protocol)")
    p.add_argument("--model", default=None, help="model name (see `reslab models`); sets model.name")
    _add_data_dir(p)
    p.add_argument("--runs-dir", default="runs", help="where run directories are created")
    p.add_argument("--epochs", type=float, default=None, help="train this many epochs (sets train.epochs, "
                   "which overrides train.iterations)")
    p.add_argument("--seed", type=int, default=None, help="training seed (sets train.seed; default 0)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (sets train.device)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its newest good "
                   "checkpoint (its own config is used; only --device may change)")
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

    p = sub.add_parser("eval", help="evaluate a run or checkpoint: error, per-class accuracy, confusion matrix",
                       formatter_class=fmt)
    p.add_argument("target", metavar="RUN_DIR|CKPT")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which split to evaluate")
    p.add_argument("--weights", default="last", choices=("last", "best"),
                   help="for a run directory: final weights, or best on validation")
    _add_data_dir(p)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--no-csv", action="store_true", help="do not write the confusion-matrix CSV")

    p = sub.add_parser("models", help="list every registered model with parameters and MACs", formatter_class=fmt)
    p.add_argument("--filter", default=None, help="only names containing this text")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("data", help="data set commands", formatter_class=fmt)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = dsub.add_parser("info", help="where the data is, counts per split and class, channel statistics",
                        formatter_class=fmt)
    _add_data_dir(q)
    q.add_argument("--config", default=None, help="config whose split to describe (default: built-in)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("import", help="convert other projects' pretrained weights into reslab checkpoints",
                       formatter_class=fmt)
    isub = p.add_subparsers(dest="import_source", required=True, metavar="SOURCE")
    q = isub.add_parser("akamaster", help="akamaster/pytorch_resnet_cifar10 .th files (resnet20/32/44/56/110/1202)",
                        formatter_class=fmt)
    q.add_argument("file", help="the .th file")
    q.add_argument("--out", required=True, help="the reslab checkpoint to write (must not exist)")
    p = sub.add_parser("study", help="train a grid of models under one protocol and write a report",
                       formatter_class=fmt)
    ssub = p.add_subparsers(dest="study_kind", required=True, metavar="STUDY")
    q = ssub.add_parser("degradation", formatter_class=fmt,
                        help="plain vs residual nets of several depths (the paper's Fig. 6 / Table 6)",
                        description="Trains {plain, resnet} x depths under one protocol; only the shortcut differs "
                                    "within a pair. Rerunning the same command resumes the study.")
    q.add_argument("--profile", default="quick", help="quick (CPU, ~15 min), paper (the full protocol, for a GPU), "
                   "or a YAML config file")
    q.add_argument("--depths", default=None, help="comma-separated CIFAR depths (6n+2); default 20,56 for quick, "
                   "20,32,44,56 otherwise")
    _add_study_options(q, "degradation")
    q = ssub.add_parser("imagenet-style", formatter_class=fmt,
                        help="plain18/34, resnet18/34 and the multi-scale resnet18_ms on CIFAR-10 (one protocol)",
                        description="Trains plain18, resnet18, plain34, resnet34 and resnet18_ms under one protocol "
                                    "and reports degradation, depth and multi-scale verdicts. Rerunning the same "
                                    "command resumes the study.")
    q.add_argument("--profile", default="full", help="full (the published study's protocol: 150 epochs, batch 256; "
                   "a GPU job), quick (CPU, reduced width; see configs/imagenet_style_quick.yaml), or a YAML file")
    _add_study_options(q, "imagenet-style")

    p = sub.add_parser("report", help="(re)build a study's report.md / report.html from its runs", formatter_class=fmt)
    p.add_argument("study_dir", metavar="STUDY_DIR")
    for module in _extensions():
        COMMANDS.update(module.register(sub))
    return ap


# Command groups that live beside the code they drive: each module has register(subparsers) -> {command: handler}.
EXTENSIONS: tuple[str, ...] = ("reslab.bench", "reslab.analysis.cli")


def _extensions():
    import importlib

    return [importlib.import_module(name) for name in EXTENSIONS]


def _study_data_dir(a) -> str | None:
    if a.data_dir is not None and not Path(a.data_dir).exists():
        raise ReslabError(f"--data-dir {a.data_dir} does not exist")
    return str(Path(a.data_dir).resolve()) if a.data_dir else None


def _run_study(a, spec, default_out: Path) -> int:
    """What every study command does once its plan is made: check --devices, then train, resume or skip."""
    from reslab.study import run_study

    devices = [d.strip() for d in a.devices.split(",")] if a.devices else None
    if devices:
        from reslab.engine.trainer import resolve_device
        for d in devices:
            resolve_device(d)
    run_study(spec, Path(a.out) if a.out else default_out, devices=devices, quiet=a.quiet, report=not a.no_report)
    return 0


def cmd_study(a) -> int:
    if a.study_kind == "imagenet-style":
        from reslab.study.imagenet_style import plan_imagenet_style, profile_name

        spec = plan_imagenet_style(a.profile, a.seeds, a.overrides, _study_data_dir(a))
        return _run_study(a, spec, Path("studies") / f"imagenet-style-{profile_name(a.profile)}")
    from reslab.study import plan_degradation
    from reslab.study.degradation import parse_depths

    data_dir = _study_data_dir(a)
    profile_name = Path(a.profile).stem if a.profile.endswith(".yaml") else a.profile
    spec = plan_degradation(a.profile, parse_depths(a.depths, profile_name), a.seeds, a.overrides, data_dir)
    return _run_study(a, spec, Path("studies") / f"degradation-{profile_name}")


def cmd_report(a) -> int:
    from reslab.report import write_report

    paths = write_report(Path(a.study_dir))
    print(f"wrote {paths['md']} and {paths['html']}")
    return 0


def _train_argv(a) -> list[str]:
    """The `reslab train` arguments in `a`, minus --nproc: what --nproc hands to each torchrun worker."""
    out = []
    for flag, v in (("--config", a.config), ("--model", a.model), ("--data-dir", a.data_dir),
                    ("--runs-dir", a.runs_dir), ("--epochs", a.epochs), ("--seed", a.seed), ("--device", a.device),
                    ("--resume", a.resume), ("--run-name", a.run_name)):
        if v is not None:
            out += [flag, str(v)]
    for o in a.overrides:
        out += ["--set", o]
    out += [f for f, on in (("--quiet", a.quiet), ("--print-config", a.print_config), ("--sync-bn", a.sync_bn)) if on]
    return out


def cmd_train(a) -> int:
    import os

    from reslab.config import dump_yaml, load_config
    from reslab.engine import train
    from reslab.engine.distributed import launch, launched

    if a.nproc is not None:
        if a.nproc < 1:
            raise ReslabError(f"--nproc {a.nproc}: must be a positive number of processes")
        if launched():
            raise ReslabError(f"--nproc {a.nproc}: this process is already one of {os.environ.get('WORLD_SIZE')} "
                              f"started by torchrun; drop --nproc")
        if a.nproc > 1 and not a.print_config:
            return launch(a.nproc, _train_argv(a))
    if a.resume:
        given = [n for n, v in (("--config", a.config), ("--model", a.model), ("--epochs", a.epochs),
                                ("--seed", a.seed), ("--set", a.overrides), ("--data-dir", a.data_dir),
                                ("--sync-bn", a.sync_bn)) if v]
        if given:
            raise ReslabError(f"--resume continues a run with its own config; drop {', '.join(given)} "
                              f"(only --device may change)")
        return _run_train(lambda: train(resume=a.resume, device=a.device, quiet=a.quiet))
    overrides = list(a.overrides)
    data_dir = str(Path(a.data_dir).resolve()) if a.data_dir else None  # absolute: resume works from anywhere
    for flag, key in ((a.model, "model.name"), (data_dir, "data.dir"), (a.epochs, "train.epochs"),
                      (a.seed, "train.seed"), (a.device, "train.device"), (a.sync_bn or None, "train.sync_bn")):
        if flag is not None:
            overrides.insert(0, f"{key}={flag}")
    if a.data_dir is not None and not Path(a.data_dir).exists():
        raise ReslabError(f"--data-dir {a.data_dir} does not exist")
    cfg = load_config(a.config, overrides)
    if a.quiet:
        cfg.log.progress = False
    if a.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    return _run_train(lambda: train(cfg, runs_dir=a.runs_dir, quiet=a.quiet, run_name=a.run_name))


def _run_train(fn) -> int:
    """Under torchrun, ranks other than 0 name themselves in an error line (exit code 2 everywhere)."""
    import os

    try:
        fn()
    except ReslabError as e:
        if os.environ.get("RANK", "0") != "0":
            print(f"reslab: error (rank {os.environ['RANK']}): {e}", file=sys.stderr)
            return 2
        raise
    return 0


def cmd_eval(a) -> int:
    from reslab.engine.eval_run import evaluate_checkpoint, format_eval, write_confusion_csv

    result, ckpt, ckpt_path = evaluate_checkpoint(a.target, split=a.split, data_dir=a.data_dir, which=a.weights,
                                                  device=a.device)
    csv_path = None
    if not a.no_csv:
        target = Path(a.target)
        if target.is_dir():
            (target / "eval").mkdir(exist_ok=True)
            csv_path = target / "eval" / f"confusion-{a.split}-{a.weights}.csv"
        else:
            csv_path = target.with_name(f"{target.stem}.confusion-{a.split}.csv")
        csv_path = write_confusion_csv(csv_path, result)
    if a.json:
        d = result.as_dict()
        out = {"checkpoint": str(ckpt_path), "model": ckpt["model"]["name"], "split": a.split,
               f"{a.split}_error": round(d["error"], 4), "loss": d["loss"], "n": d["n"], "per_class": d["per_class"],
               "confusion": d["confusion"], "normalization": ckpt["normalization"]["note"] or ckpt["normalization"]["kind"],
               "iteration": ckpt.get("iteration"), "confusion_csv": str(csv_path) if csv_path else None}
        print(json.dumps(out))
    else:
        print(format_eval(result, ckpt, ckpt_path, a.split))
        if csv_path:
            print(f"\nconfusion matrix: {csv_path}")
    return 0


def cmd_models(a) -> int:
    from reslab.models import count_macs, count_params, create_model, list_models

    from reslab.models.imagenet import FAMILY, macs_at_224

    rows = []
    for name in list_models():
        if a.filter and a.filter not in name:
            continue
        m = create_model(name)
        row = {"name": name, "parameters": count_params(m), "macs_32": count_macs(m, (3, 32, 32))}
        if name in FAMILY:  # 224x224 only where it means something: the ImageNet-style nets with stem=imagenet
            row["macs_224"] = macs_at_224(m, row["macs_32"])
        rows.append(row)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"{'model':<14}{'parameters':>14}{'(paper)':>9}{'MACs @32x32':>16}{'MACs @224x224':>16}{'(paper)':>9}")
    paper = {20: "0.27M", 32: "0.46M", 44: "0.66M", 56: "0.85M", 110: "1.7M", 1202: "19.4M"}
    paper_224 = {18: "1.8G", 34: "3.6G", 50: "3.8G", 101: "7.6G", 152: "11.3G"}  # Table 1 "FLOPs" (mult-adds)
    from reslab.engine.trainer import model_depth

    for r in rows:
        fam = r["name"] in FAMILY
        ref = paper.get(model_depth(r["name"]), "") if r["name"].startswith(("resnet", "plain")) and not fam else ""
        ref224 = paper_224.get(model_depth(r["name"]), "") if fam and not r["name"].endswith("_ms") else ""
        m224 = f"{r['macs_224'] / 1e9:>14.2f}G" if r.get("macs_224") else f"{'–':>15}"
        print(f"{r['name']:<14}{r['parameters']:>14,}{ref:>9}{r['macs_32'] / 1e6:>14.1f}M{m224}{ref224:>9}")
    print("\nAlso: resnetN / plainN for any CIFAR depth N = 6n+2 (e.g. resnet8, plain74).")
    print("Parameters and MACs @32x32: the model as built by default (10 classes, option-A shortcuts, CIFAR stem). "
          "MACs @224x224: ImageNet-style nets with stem=imagenet (paper: He et al. 2016, Table 1).")
    return 0


def cmd_data_info(a) -> int:
    from reslab.config import load_config
    from reslab.data import CLASSES, Normalizer, load_cifar10, make_splits, resolve_data_dir

    cfg = load_config(a.config, a.overrides)
    data_dir = a.data_dir if a.data_dir is not None else cfg.data.dir
    if data_dir is not None and not Path(data_dir).exists():
        raise ReslabError(f"--data-dir {data_dir} does not exist")
    data = load_cifar10(data_dir)
    d = cfg.data
    s = make_splits(data.train_labels, data.test_labels, val_size=d.val_size, split_seed=d.split_seed,
                    train_subset=d.train_subset, val_subset=d.val_subset, test_subset=d.test_subset)
    splits = {"train": data.train_labels[s.train], "val": data.train_labels[s.val], "test": data.test_labels[s.test]}
    ch = Normalizer.fit(data.train_images[s.train], "channel")
    info = {"data_dir": str(resolve_data_dir(data_dir)), "source": str(data.source),
            "official_archive_md5": data.official,
            "splits": {k: {"images": int(v.numel()), "per_class": v.bincount(minlength=10).tolist()}
                       for k, v in splits.items()},
            "train_channel_mean": ch.mean.tolist(), "train_channel_std": ch.std.tolist()}
    if a.json:
        print(json.dumps(info))
        return 0
    print(f"data dir     {info['data_dir']}")
    print(f"source       {data.source}  ({'official archive, md5 verified' if data.official else 'structurally checked copy (not the official byte stream)'})")
    print(f"split        val_size={d.val_size} split_seed={d.split_seed} train_subset={d.train_subset} "
          f"test_subset={d.test_subset}")
    print(f"\n{'split':<8}{'images':>8}  " + " ".join(f"{c[:5]:>6}" for c in CLASSES))
    for k, v in info["splits"].items():
        print(f"{k:<8}{v['images']:>8}  " + " ".join(f"{n:>6}" for n in v["per_class"]))
    fmt = lambda t: ", ".join(f"{x:.4f}" for x in t)  # noqa: E731
    print(f"\ntrain channel mean ({fmt(ch.mean.tolist())})  std ({fmt(ch.std.tolist())})  [R, G, B; pixels / 255]")
    return 0


def cmd_import(a) -> int:
    from reslab.importers.akamaster import import_akamaster

    info = import_akamaster(a.file, a.out)
    print(f"imported {a.file} -> {info['out']}: {info['model']} ({info['parameters']:,} parameters, option A); "
          f"normalisation: ImageNet mean/std recorded (as published)")
    if info.get("published_accuracy") is not None:
        print(f"published accuracy {info['published_accuracy']:.2f}% (test error {100 - info['published_accuracy']:.2f}%); "
              f"check with: reslab eval {info['out']}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "models": cmd_models, "import": cmd_import, "study": cmd_study,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        if a.command == "data":
            return cmd_data_info(a)
        return COMMANDS[a.command](a)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nreslab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
