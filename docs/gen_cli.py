"""The CLI reference, generated from reslab's own argparse parsers (an MkDocs hook, named in mkdocs.yml).

docs/cli.md holds the marker line `<!-- cli-reference -->`; at build time it is replaced by the `--help` text of
every command and subcommand, rendered at a fixed width (COLUMNS=100) so the page is the same on every machine
and cannot disagree with `reslab ... --help` (tests/test_docs.py compares the two).

Run it directly to print the reference: `PYTHONPATH=src python docs/gen_cli.py`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WIDTH = 100
MARKER = "<!-- cli-reference -->"
SRC = Path(__file__).resolve().parents[1] / "src"

if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))  # document this checkout's reslab, installed or not


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of `parser`'s subcommands, by name (empty when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_text(parser: argparse.ArgumentParser) -> str:
    """`parser.format_help()` at WIDTH columns (argparse reads the width from $COLUMNS)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return parser.format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def help_pages() -> list[tuple[list[str], str]]:
    """(argv, help text) for `reslab`, every command and every subcommand, in `reslab --help` order.

    build_parser attaches a command's options only when that command is named, so it is called once per command.
    """
    from reslab.cli import COMMANDS, build_parser

    pages = [([], help_text(build_parser([])))]
    for name in COMMANDS:
        command = subcommands(build_parser([name]))[name]
        pages.append(([name], help_text(command)))
        for sub, parser in subcommands(command).items():
            pages.append(([name, sub], help_text(parser)))
    return pages


def reference_markdown() -> str:
    """One section per command: its title, then its `--help` text; first a line of links to every section."""
    pages = help_pages()
    titles = [" ".join(["reslab", *argv]) for argv, _ in pages]
    index = " · ".join(f"[`{title}`](#{title.replace(' ', '-')})" for title in titles)
    parts = [f"{index}\n"]
    for title, (_, text) in zip(titles, pages):
        anchor = title.replace(" ", "-")
        parts.append(f"## `{title}` {{#{anchor}}}\n\n```text\n$ {title} --help\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: put the generated reference where cli.md holds the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference_markdown())


if __name__ == "__main__":
    print(reference_markdown())
