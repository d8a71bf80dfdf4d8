"""docs/paper-protocol/ is written by benchmarks/paper_protocol_report.py from finished runs: the final iteration's
test error beside Table 6 (never a best epoch picked on test), the small files only, nothing for an unfinished run."""
import importlib.util
import json

import pytest

from reslab import ReslabError
from reslab.engine import train

from conftest import REPO

_spec = importlib.util.spec_from_file_location("paper_protocol_report",
                                               REPO / "benchmarks" / "paper_protocol_report.py")
ppr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ppr)


def test_report_quotes_the_final_iteration_beside_table6(tiny_cfg, tmp_path):
    run = train(tiny_cfg(**{"model.name": "resnet20"}), runs_dir=tmp_path / "runs", quiet=True)
    s = json.loads((run / "summary.json").read_text())
    out = tmp_path / "docs"
    assert ppr.main([str(run), "--machine", "test CPU", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| resnet20"))
    assert "8.75%" in row and f"**{s['final']['test_error']:.2f}%**" in row
    assert "test CPU" in md and (out / "curves.png").stat().st_size > 0
    copied = {p.name for p in (out / run.name).iterdir()}
    assert {"config.yaml", "metrics.csv", "summary.json", "test_eval.json"} <= copied
    assert not any(p.suffix == ".pt" for p in (out / run.name).rglob("*"))  # never checkpoints


def test_an_unfinished_run_is_refused_before_anything_is_written(tiny_cfg, tmp_path):
    done = train(tiny_cfg(), runs_dir=tmp_path / "runs", quiet=True)
    half = train(tiny_cfg(), runs_dir=tmp_path / "runs", quiet=True, stop_after=10)
    with pytest.raises(ReslabError, match="has not finished"):
        ppr.main([str(done), str(half), "--machine", "x", "--out", str(tmp_path / "docs")])
    assert not (tmp_path / "docs").exists()
