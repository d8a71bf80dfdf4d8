"""A tiny document model, rendered both to Markdown and to self-contained HTML (figures embedded).

Reports are built once as a list of blocks, so report.md and report.html can never say different things.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str          # may contain **bold**


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: str = ""    # per column: l or r (default: first l, rest r)


@dataclass
class Marks:
    """A scorecard: one line per claim, its mark first ("reproduced", "not separable", ...: the keys of
    MARK_STYLES), shown as a coloured badge that also carries the word and a symbol (never colour alone)."""
    items: list[tuple[str, str]]   # (mark, claim)


# mark -> (symbol, badge background, badge text colour); every pair reads at >= 4.5:1 contrast
MARK_STYLES = {
    "reproduced": ("✔", "#1a7f37", "#ffffff"),
    "not reproduced": ("✘", "#c62828", "#ffffff"),
    "not separable": ("≈", "#f2c94c", "#3d2b00"),
    "not assessed": ("–", "#e1e4e8", "#333333"),
}


def _mark_parts(mark: str) -> tuple[str, str, str]:
    return MARK_STYLES.get(mark, ("?", "#e1e4e8", "#333333"))


@dataclass
class Figure:
    path: Path         # PNG file (relative links in Markdown, embedded in HTML)
    caption: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks):
        self.blocks.extend(blocks)
        return self


def to_markdown(doc: Document, base: Path) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {i}" for i in b.items] + [""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{b.caption}*", ""]
            al = b.align or ("l" + "r" * (len(b.header) - 1))
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join(":---" if a == "l" else "---:" for a in al) + "|")
            out += ["| " + " | ".join(str(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Marks):
            out += [f"- {_mark_parts(m)[0]} **{m}** — {claim}" for m, claim in b.items] + [""]
        elif isinstance(b, Figure):
            # links relative to the report's own folder, whatever the current directory was
            rel = Path(os.path.relpath(Path(b.path).resolve(), Path(base).resolve()))
            out += [f"![{b.caption}]({rel.as_posix()})", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _html_inline(text: str) -> str:
    t = html.escape(text)
    parts = t.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts)).replace("`", "")


def _html_marks(b: Marks) -> str:
    rows = []
    for mark, claim in b.items:
        symbol, bg, fg = _mark_parts(mark)
        slug = mark.replace(" ", "-")
        rows.append(f"<li><span class='mark mark-{slug}' style='background:{bg};color:{fg}'>{symbol} "
                    f"{html.escape(mark)}</span> {_html_inline(claim)}</li>")
    return "<ul class='marks'>" + "".join(rows) + "</ul>"


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:0.5em 0 1.2em}
td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}td.r,th.r{text-align:right}th.l{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:0.92em}
caption{caption-side:top;text-align:left;color:#555;font-style:italic;padding-bottom:4px}
ul.marks{list-style:none;padding:0;margin:0.6em 0 1em}ul.marks li{margin:0.3em 0}
.mark{display:inline-block;min-width:9.5em;margin-right:0.6em;padding:1px 8px;border-radius:4px;
font-weight:600;font-size:0.92em;text-align:left}"""


def to_html(doc: Document) -> str:
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{html.escape(doc.title)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_html_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            al = b.align or ("l" + "r" * (len(b.header) - 1))
            cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th class='{a}'>{html.escape(h)}</th>" for h, a in zip(b.header, al))
            rows = "".join("<tr>" + "".join(f"<td class='{a}'>{_html_inline(str(c))}</td>" for c, a in zip(r, al))
                           + "</tr>" for r in b.rows)
            out.append(f"<table>{cap}<tr>{head}</tr>{rows}</table>")
        elif isinstance(b, Marks):
            out.append(_html_marks(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(Path(b.path).read_bytes()).decode()
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b.caption)}'>"
                       f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
