"""summary.json as one typed record (engine/summary.py): the same bytes on disk, one meaning of "missing"."""
import json

from reslab import layout
from reslab.config import dump_yaml
from reslab.engine import runs
from reslab.engine.summary import MISSING, RunSummary, read_summary, write_summary
from reslab.export.card import training_lines
from reslab.study import plan_degradation
from reslab.study.results import load_study
from reslab.study.spec import open_study, run_status
from reslab.study.status import run_state

RUNNING = {"status": "running", "error": None, "model": "resnet8", "shortcut": "A", "parameters": 75290,
           "iterations_done": 4, "iterations": 12, "final": {"iteration": 4, "test_error": 80.0, "train_error": 85.0},
           "best": {"iteration": 4, "val_error": 82.0, "test_error": 80.0}, "best_selected_on": "validation",
           "wall_seconds": 3.5, "train_images_per_s": 120.0}
INTERRUPTED = {**RUNNING, "status": "interrupted", "stopped_by": "SIGTERM", "evaluation_pending": True}


def test_a_summary_is_written_byte_for_byte_as_before(tmp_path):
    for d in (RUNNING, INTERRUPTED, {**RUNNING, "a_key_of_a_later_version": [1, 2]}):
        runs.write_json(tmp_path / "before.json", d)  # how the trainer wrote its dict
        write_summary(tmp_path, RunSummary.from_json(d))
        assert (tmp_path / layout.SUMMARY_FILE).read_bytes() == (tmp_path / "before.json").read_bytes()
    s = read_summary(tmp_path)
    assert (s.status, s.best["val_error"], s.stopped_by, s.missing) == ("running", 82.0, None, False)


def test_no_summary_reads_as_missing_and_every_reader_agrees(tmp_path):
    assert read_summary(tmp_path / "nowhere").status == MISSING and read_summary(tmp_path).missing
    spec = plan_degradation("quick", (8,), seeds=1)
    out = tmp_path / "study"
    open_study(spec, out, warn=lambda m: None).release()
    started = out / "runs" / "plain8-s0"  # made by a run that died before its first summary
    started.mkdir()
    (started / "config.yaml").write_text(dump_yaml(spec.run_config(spec.runs[0])))
    # not started: missing / pending; started without a summary: resumable, as an interrupted run, everywhere
    assert [run_status(out / "runs" / r.name) for r in spec.runs] == ["interrupted", "missing"]
    assert [run_state(r.name, "", out / "runs" / r.name).state for r in spec.runs] == ["interrupted", "pending"]
    assert [r.status for r in load_study(out).runs] == ["interrupted", "missing"]
    assert [r.summary.missing for r in load_study(out).runs] == [True, True]
    card = "\n".join(training_lines(started))
    assert "status missing" in card and "- protocol: ? of ? iterations" in card
    (started / layout.SUMMARY_FILE).write_text(json.dumps(INTERRUPTED))
    assert run_state("plain8-s0", "", started).where == "stopped by SIGTERM"
