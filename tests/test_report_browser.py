"""The report as a browser shows it: benchmarks/check_report_browser.py opens report.html in headless Chromium,
which says itself whether every figure decoded. Skipped where no Chromium is installed."""
import base64
import importlib.util
import re
import struct
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_report_browser", REPO / "benchmarks" / "check_report_browser.py")
browser = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = browser  # its dataclasses look their module up there
_spec.loader.exec_module(browser)


@pytest.fixture(scope="session")  # session: set up before the (session) report, so a skip costs no training
def chromium():
    exe = browser.find_chromium()
    if exe is None:
        pytest.skip(f"no Chromium binary ($CHROMIUM or one of {', '.join(browser.CHROMIUM_NAMES)} on PATH); "
                    "install it (apt-get install chromium) to run the browser check")
    return exe


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_figure_of_the_report_decodes_in_chromium(chromium, tiny_degradation_report, tmp_path):
    html = tiny_degradation_report["html"]
    n_figures = html.read_text().count("<img src='data:image/png;base64,")
    assert n_figures >= 4  # Fig. 6, pairs, lr, confusion, responses
    lines = []
    assert browser.check(html.parent, shot=tmp_path / "shot.png", log=lines.append) == 0, lines
    decoded = [ln for ln in lines if ln.startswith("ok ")]
    assert len(decoded) == n_figures and not any(ln.startswith("FAILED") for ln in lines)
    assert all(int(re.search(r": (\d+)x(\d+) px", ln).group(1)) > 0 for ln in decoded)  # the browser's width
    assert _png_size(tmp_path / "shot.png") == (browser.WIDTH, browser.HEIGHT)


def test_a_figure_the_browser_cannot_decode_fails_the_check(chromium, tiny_degradation_report, tmp_path):
    text = tiny_degradation_report["html"].read_text()
    first = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    # bytes that are no picture (a PNG merely cut short still decodes: Chromium draws what arrived)
    broken = base64.b64encode(b"<html>an error page saved as the figure</html>").decode()
    (tmp_path / "report.html").write_text(text.replace(first.group(1), broken, 1))
    lines = []
    assert browser.check(tmp_path / "report.html", log=lines.append) == 1
    assert lines[0].startswith("FAILED image 1:") and all(ln.startswith("ok ") for ln in lines[1:-1])
    assert lines[-1].endswith("images decoded in Chromium; 1 FAILED")


def test_no_chromium_is_a_clear_exit_2(tiny_degradation_report, monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CHROMIUM", raising=False)
    lines = []
    assert browser.check(tiny_degradation_report["html"], log=lines.append) == 2
    assert lines == [f"error: no Chromium found (tried $CHROMIUM and {', '.join(browser.CHROMIUM_NAMES)} on PATH); "
                     "install it, e.g. apt-get install chromium"]
    assert browser.check(Path("/nonexistent"), log=lines.append) == 2 and "no report.html at" in lines[-1]
