"""Write a study's report: the study's kind picks its report module, which builds one Document; the Document is
written as report.md (figures beside it) and a self-contained report.html."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reslab import ReslabError, layout
from reslab.weights.files import atomic_write_text
from reslab.report import degradation, imagenet_style
from reslab.report.document import Document, to_html, to_markdown
from reslab.study.spec import read_spec
from reslab.trackers import TrackedRun, log_study_report

# One report module per study kind (the same names as reslab.study.KINDS): each exports build_report.
REPORTS = {m.KIND: m for m in (degradation, imagenet_style)}


def build_report(study_dir: Path, announce: Callable[[str], None] | None = None) -> tuple[Document, dict]:
    """The report of the study in `study_dir` as a Document (and its figures and verdicts), nothing written.
    `announce` gets one line saying what is built, once the study has been checked."""
    spec = read_spec(study_dir)
    if spec.kind not in REPORTS:
        raise ReslabError(f"{study_dir} is a study of kind {spec.kind!r}, which has no report; known: "
                          f"{', '.join(REPORTS)}")
    if announce:
        announce(f"building the report of {study_dir} ({spec.kind} study, {len(spec.runs)} runs) ...")
    return REPORTS[spec.kind].build_report(Path(study_dir))


def write_report(study_dir: Path, announce: Callable[[str], None] | None = None) -> dict:
    """STUDY/report/report.md and report.html (and figures); returns their paths, the figures and the verdicts."""
    study_dir = Path(study_dir)
    if read_spec(study_dir).config().data.test_subset == 0:
        raise ReslabError(f"{study_dir} is a validation-only study (data.test_subset=0): its runs have no test "
                          f"errors for a report's verdicts; read their validation errors in runs/*/metrics.csv")
    doc, extra = build_report(study_dir, announce)
    out = layout.report_dir(study_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, html_path = out / layout.REPORT_MD, out / layout.REPORT_HTML
    atomic_write_text(md, to_markdown(doc, out))
    atomic_write_text(html_path, to_html(doc))
    return {"md": md, "html": html_path, **extra}


def share_report(study_dir: Path, warn=print) -> None:
    """The report's files (report.md, report.html, figures) as artifacts of a tracker run named "report" in the
    study's W&B group / MLflow experiment, for the trackers the study's runs log to (train.loggers)."""
    study_dir = Path(study_dir)
    cfg = read_spec(study_dir).config()
    files = sorted(p for p in layout.report_dir(study_dir).iterdir() if p.is_file())
    if not cfg.train.loggers or not files:
        return
    who = TrackedRun(layout.report_dir(study_dir), "report", study_dir.resolve().name, study_dir, cfg.log.project,
                     cfg.log.mlflow_uri)
    log_study_report(cfg.train.loggers, who, files, warn)
