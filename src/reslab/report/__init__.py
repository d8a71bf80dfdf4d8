"""Study reports: figures, tables against the paper, verdicts; report.md and a self-contained report.html."""
from reslab.report.build import build_report, share_report, write_report

__all__ = ["build_report", "share_report", "write_report"]
