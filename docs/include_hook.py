"""MkDocs hook: a page line `<!-- include benchmarks/README.md -->` is replaced by that file, read at build time,
so the page cannot drift from it. The file's headings move one level down (it becomes a section of the page),
and its relative links, which point into its own folder rather than into the site, become repository paths in
code style (`benchmarks/results/`) instead of dead links."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^<!-- include (\S+) -->$", re.M)
LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)")
HEADING = re.compile(r"^(#+) ", re.M)


def included(rel: str) -> str:
    folder = str(Path(rel).parent) + "/"
    text = (ROOT / rel).read_text(encoding="utf-8")
    text = LINK.sub(lambda m: f"`{folder}{m.group(2)}`", text)
    return HEADING.sub(lambda m: "#" + m.group(1) + " ", text)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return INCLUDE.sub(lambda m: included(m.group(1)), markdown)
