"""`reslab ...`: a thin command line over the Python API (every command is a few calls into reslab.*).

One module per command (reslab/cli/<command>.py), each with `configure(parser)` and `run(args) -> exit code`.
Only the module of the command being run is imported, so `reslab --help` does not import torch. To add a
command: write its module and add one line to COMMANDS.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from reslab import ReslabError, __version__
from reslab.cli.common import HelpFormatter

EPILOG = ("Docs: README.md and the site in docs/ (mkdocs serve). Every error that you can fix exits with code 2 and "
          "one line saying what to change.")

# name: (module, one-line help), in the order `reslab --help` lists them
COMMANDS = {
    "train": ("reslab.cli.train", "train one model (a new run directory), or resume one"),
    "eval": ("reslab.cli.eval", "error, per-class accuracy, confusion matrix of a run, checkpoint or published model"),
    "models": ("reslab.cli.models", "list every registered model with parameters and MACs"),
    "data": ("reslab.cli.data", "data set commands"),
    "import": ("reslab.cli.importer", "convert other projects' pretrained weights into reslab checkpoints"),
    "export": ("reslab.cli.export", "export a run, checkpoint or published model: onnx, pt2, safetensors, folder"),
    "study": ("reslab.cli.study", "train a grid of models under one protocol and write a report"),
    "report": ("reslab.cli.report", "(re)build a study's report.md / report.html from its runs"),
    "bench": ("reslab.cli.bench", "benchmark reslab's training/eval step against the conventional pipeline"),
    "analyze": ("reslab.cli.analyze", "why residual learning works: layer responses (Fig. 7) and gradient flow"),
}


def all_options(parser: argparse.ArgumentParser) -> list[str]:
    """Every --option of `parser` and of the subcommands below it."""
    out = []
    for action in parser._actions:
        out += [o for o in action.option_strings if o.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += all_options(sub)
    return out


def unrecognized(ap: argparse.ArgumentParser, extra: list[str]) -> str:
    """argparse's message for unknown arguments, with a "did you mean" for the first misspelt option."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    for word in (w for w in extra if w.startswith("--")):
        guess = difflib.get_close_matches(word.split("=")[0], all_options(ap), n=1)
        if guess:
            return message + f" (did you mean {guess[0]}?)"
    return message


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser; only the command named in `argv` (if any) gets its own options, from its own module."""
    ap = argparse.ArgumentParser(prog="reslab", description="Plain vs residual networks on CIFAR-10, as in "
                                 "He et al. 2016.", epilog=EPILOG, formatter_class=HelpFormatter)
    ap.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, formatter_class=HelpFormatter,
                           description=getattr(mod, "DESCRIPTION", None))
        mod.configure(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser(argv)
    a, extra = ap.parse_known_args(argv)
    if extra:
        ap.error(unrecognized(ap, extra))
    try:
        return importlib.import_module(COMMANDS[a.command][0]).run(a)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nreslab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `reslab models --json | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
