"""What the resume tests compare: every number a run wrote that does not depend on the clock."""
from reslab.engine.runs import read_metrics

TIMING = ("seconds", "images_per_s", "wall_seconds")


def numbers(run_dir):
    """(metrics.csv rows without timing columns, train_log.csv rows): equal for two runs only if they trained
    alike at every evaluation and every dense-curve point."""
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run_dir / "metrics.csv")]
    return rows, read_metrics(run_dir / "train_log.csv")
