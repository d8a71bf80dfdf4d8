"""`reslab analyze responses|gradients`: Fig. 7 layer responses and gradient flow of runs or checkpoints."""
from __future__ import annotations

from pathlib import Path

from reslab.analysis.common import DataCache, fresh_paths
from reslab.analysis.findings import gradient_verdicts, response_verdicts
from reslab.analysis.gradients import measure_gradients, plot_gradients, write_gradients_csv
from reslab.analysis.responses import SPLITS, measure_responses, plot_responses, write_responses_csv
from reslab.cli.common import HelpFormatter
from reslab.engine.progress import announce


def configure(p) -> None:
    asub = p.add_subparsers(dest="analyze_kind", required=True, metavar="ANALYSIS")
    q = _analysis(asub, "responses", "targets", "RUN_DIR|CKPT|NAME",
                  help="std of every 3x3 layer's response after BN (the paper's Fig. 7)",
                  description="For each run directory, checkpoint file (imported weights included) or model "
                              "name with published weights (NAME@SOURCE picks a source, e.g. resnet20@reslab): the std "
                              "of each 3x3 layer's output after BN, before ReLU/addition, in eval mode. Writes "
                              "responses.png (layer order, top; sorted, bottom) and responses.csv; existing "
                              "files are kept and responses-2.* etc. written instead.")
    q.add_argument("--split", default="test", choices=SPLITS, help="images to measure on")
    q.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="at most N images (a class-balanced seeded subset); default: the whole split")
    q.add_argument("--weights", default="last", choices=("last", "best"),
                   help="for a run directory: final weights, or best on validation")
    _common(q)
    q = _analysis(asub, "gradients", "runs", "RUN_DIR",
                  help="per-layer gradient norms at initialisation and each saved snapshot",
                  description="For each run directory: ||dL/dW|| of every conv, on one fixed batch of training "
                              "images (train-mode BN, no augmentation), at every snapshot the run kept "
                              "(0%%, 10%%, 50%%, 100%% of training by default). Writes gradients.png and "
                              "gradients.csv; existing files are kept and gradients-2.* etc. written instead.")
    q.add_argument("--batch-size", type=int, default=128, help="training images in the fixed batch")
    _common(q)


def _analysis(asub, name: str, positional: str, metavar: str, **text):
    """An analysis subcommand with its inputs and --out (the options both analyses start with)."""
    q = asub.add_parser(name, formatter_class=HelpFormatter, **text)
    q.add_argument(positional, nargs="+", metavar=metavar)
    q.add_argument("--out", default=".", metavar="DIR", help="where the figure and CSV go")
    return q


def _common(q) -> None:
    q.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding CIFAR-10 (default: the data dir each run was trained on, else the usual "
                        "lookup of `reslab eval`)")
    q.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps")


def run(a) -> int:
    cache = DataCache(a.data_dir)  # checks --data-dir before any model is loaded
    if a.analyze_kind == "responses":
        paths = fresh_paths(Path(a.out), "responses", ("png", "csv"))  # a bad --out fails before the work
        profiles = measure_responses(a.targets, split=a.split, max_images=a.max_images, which=a.weights,
                                     device=a.device, data_cache=cache, announce=announce)
        paths["png"].parent.mkdir(parents=True, exist_ok=True)
        plot_responses(profiles, paths["png"])
        write_responses_csv(profiles, paths["csv"])
        for p in profiles:
            print(f"{p.label:<24} {len(p.std):>3} layers  mean std {sum(p.std) / len(p.std):.3f}  "
                  f"({p.images} {p.split} images, {p.source})")
        verdicts = response_verdicts(profiles)
    else:
        paths = fresh_paths(Path(a.out), "gradients", ("png", "csv"))
        profiles = measure_gradients(a.runs, batch_size=a.batch_size, device=a.device, data_cache=cache,
                                     announce=announce)
        paths["png"].parent.mkdir(parents=True, exist_ok=True)
        plot_gradients(profiles, paths["png"])
        write_gradients_csv(profiles, paths["csv"])
        verdicts = gradient_verdicts(profiles)
    for v in verdicts:
        print(f"- {v.text}")
    print(f"wrote {paths['png']} and {paths['csv']}")
    return 0
