"""Open a study's report.html in headless Chromium and let the browser itself say whether every figure decoded.

    python benchmarks/check_report_browser.py STUDY/report            # or STUDY, or STUDY/report/report.html
    python benchmarks/check_report_browser.py STUDY --screenshot shot.png --full-page

A copy of report.html (in a temporary folder; the report is never touched) gets a small script appended that,
when the page has loaded, writes one line per <img> into the DOM — decoded or not (naturalWidth > 0), its
natural size, its alt text; `chromium --headless --dump-dom` prints that DOM back.
A second run of Chromium takes a screenshot of the unmodified report (1280 px wide; 4000 px tall, or the whole
page with --full-page).

Prints one line per image and exits 0 when every image decoded, 1 when one did not (or none was found), and 2
when Chromium is missing or gave no answer. Chromium: $CHROMIUM, else the first of CHROMIUM_NAMES on PATH
(Debian: `apt-get install chromium`). Standard library only.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WIDTH, HEIGHT, MAX_HEIGHT = 1280, 4000, 30000
RESULT_ID = "reslab-image-check"

# Appended to the copy only. The page's load event waits for every image to load or fail, so in its handler each
# <img> is complete and naturalWidth > 0 is the browser's own word that it decoded the bytes as a picture (a
# failed one has 0). The answer is written synchronously, inside the event, so it is in the DOM before
# --dump-dom reads it (a promise, e.g. img.decode(), could settle after the dump).
PROBE = """<script>
window.addEventListener('load', function () {
  var lines = Array.prototype.map.call(document.images, function (im) {
    return (im.complete && im.naturalWidth > 0 ? 'ok' : 'FAILED') + '\\t' + im.naturalWidth + 'x' +
           im.naturalHeight + '\\t' + (im.getAttribute('alt') || '').slice(0, 90);
  });
  var pre = document.createElement('pre');
  pre.id = '%s';
  pre.textContent = 'height\\t' + document.documentElement.scrollHeight + '\\n' + lines.join('\\n');
  document.body.appendChild(pre);
});
</script>""" % RESULT_ID


class CheckError(Exception):
    """Chromium missing, or it gave no answer: exit 2."""


@dataclass
class Image:
    ok: bool
    size: str
    alt: str


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser to run: `explicit` if given (and nothing else), else $CHROMIUM, else CHROMIUM_NAMES on PATH."""
    for name in (explicit,) if explicit else (os.environ.get("CHROMIUM"), *CHROMIUM_NAMES):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def report_html(path: Path) -> Path:
    """report.html from a path to it, to the report folder, or to the study folder."""
    path = Path(path)
    for cand in (path, path / "report.html", path / "report" / "report.html"):
        if cand.is_file():
            return cand
    raise CheckError(f"no report.html at {path} (give the study folder, its report/ folder or report.html)")


def chromium_args(chromium: str) -> list[str]:
    # --no-sandbox: Chromium refuses to run as root with its sandbox (containers, CI)
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-dev-shm-usage"]


def run_chromium(args: list[str], timeout: float) -> str:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckError(f"chromium did not finish within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise CheckError(f"chromium exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def probe_images(page: Path, chromium: str, budget_ms: int = 20000, timeout: float = 120) -> tuple[list[Image], int]:
    """(every <img> of the page as the browser decoded it, the page's height in CSS pixels)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "report.html"
        text = page.read_text(encoding="utf-8")
        copy.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE,
                        encoding="utf-8")
        # the screenshot's width: images scale with it (max-width), so the page's height depends on it
        dom = run_chromium([*chromium_args(chromium), f"--user-data-dir={tmp}/profile",
                            f"--window-size={WIDTH},{HEIGHT}", f"--virtual-time-budget={budget_ms}", "--dump-dom",
                            copy.as_uri()], timeout)
    found = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', dom, re.S)
    if not found:
        raise CheckError("the page never reported its images (script blocked, or the page did not finish loading "
                         "within the virtual time budget)")
    first, *lines = html.unescape(found.group(1)).splitlines()
    images = [Image(ok == "ok", size, alt) for ok, size, alt in (ln.split("\t", 2) for ln in lines if ln)]
    return images, int(first.split("\t")[1])


def screenshot(page: Path, chromium: str, out: Path, height: int, timeout: float = 120) -> Path:
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run_chromium([*chromium_args(chromium), f"--user-data-dir={tmp}/profile", f"--screenshot={out}",
                      f"--window-size={WIDTH},{height}", "--virtual-time-budget=10000", page.resolve().as_uri()],
                     timeout)
    if not out.is_file():
        raise CheckError(f"chromium wrote no screenshot at {out}")
    return out


def check(path: Path, shot: Path | None = None, full_page: bool = False, chromium: str | None = None,
          log=print) -> int:
    """The check as a function (tests call it): prints one line per image, returns the exit code."""
    try:
        page = report_html(path)
        exe = find_chromium(chromium)
        if exe is None:
            tried = chromium or f"$CHROMIUM and {', '.join(CHROMIUM_NAMES)} on PATH"
            raise CheckError(f"no Chromium found (tried {tried}); install it, e.g. apt-get install chromium")
        images, height = probe_images(page, exe)
        for i, im in enumerate(images, 1):
            log(f"{'ok    ' if im.ok else 'FAILED'} image {i}: {im.size} px  {im.alt}")
        if shot is not None:
            h = min(max(height, 600), MAX_HEIGHT) if full_page else HEIGHT
            log(f"screenshot {WIDTH}x{h}: {screenshot(page, exe, shot, h)}")
    except CheckError as e:
        log(f"error: {e}")
        return 2
    bad = sum(not im.ok for im in images)
    if not images:
        log(f"FAILED: {page} has no <img> at all")
        return 1
    log(f"{len(images) - bad} of {len(images)} images decoded in Chromium" + (f"; {bad} FAILED" if bad else ""))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a study folder, its report/ folder, or report.html")
    ap.add_argument("--screenshot", type=Path, help="write a PNG of the page here")
    ap.add_argument("--full-page", action="store_true", help=f"screenshot the whole page, not the top {HEIGHT} px")
    ap.add_argument("--chromium", help="the browser binary (default: $CHROMIUM, then the usual names on PATH)")
    a = ap.parse_args(argv)
    return check(a.report, a.screenshot, a.full_page, a.chromium)


if __name__ == "__main__":
    sys.exit(main())
