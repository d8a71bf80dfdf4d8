"""The sequence of decisions the training loop takes, recorded on tiny runs (issue 22: the loop's decisions).

`record(scenario, data_dir, tmp)` trains the scenario's run(s) with spies on the loop's actions — a point of the
training curve, the end of a timed stretch, an evaluation (+ checkpoint), a weight snapshot, the progress bar
closing, a stop with or without a pending evaluation — and returns them as [iteration, action] pairs in the
order they happened. tests/fixtures/loop-events.json holds what the loop *before* the pure decision function
did on these scenarios (written by `python tests/loop_events.py`, from commit 024f04d); tests/test_loop.py
replays them through today's loop and checks that nothing moved.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from reslab.config import load_config
from reslab.engine import trainer

FIXTURE = Path(__file__).with_name("fixtures") / "loop-events.json"

# name: (config overrides, [stop_after of each call]: None = to the end; every call after the first resumes).
# 250 training images at batch 25: 10 iterations per epoch.
SCENARIOS = {
    "eval-4-log-3": ({"train.iterations": 23, "train.eval_every": 4, "train.log_every": 3,
                      "train.snapshots": [0.0, 0.25, 1.0]}, [None]),
    "per-epoch-not-whole": ({"train.iterations": 25, "train.eval_every": 0, "train.log_every": 0}, [None]),
    "stop-at-eval-then-off-eval": ({"train.iterations": 20, "train.eval_every": 4, "train.log_every": 2},
                                   [8, 5, None]),
    "stop-at-last-iteration": ({"train.iterations": 12, "train.eval_every": 5}, [12, None]),
    "stop-before-last": ({"train.iterations": 12, "train.eval_every": 5}, [11, None]),
}


class SpyBar:
    def __init__(self, events: list, state) -> None:
        self.events, self.state = events, state

    def update(self) -> None:
        pass

    def show(self, *a) -> None:
        pass

    def close(self) -> None:
        self.events.append([self.state().iteration, "close_bar"])


def record(name: str, data_dir: Path, tmp: Path) -> list:
    over, calls = SCENARIOS[name]
    events: list = []
    current = {}
    originals = {n: getattr(trainer, n) for n in ("log_point", "tick_end", "end_interval", "stop_run",
                                                  "epoch_progress", "start_or_resume")}

    def spy(action):
        def call(run, *a, **k):
            extra = f":pending={k.get('pending_eval', False)}" if action == "stop" else ""
            events.append([run.state.iteration, action + extra])
            return originals[{"log": "log_point", "tick_end": "tick_end", "evaluate": "end_interval",
                              "stop": "stop_run"}[action]](run, *a, **k)
        return call

    def start_or_resume(run, *a, **k):
        current["run"] = run
        return originals["start_or_resume"](run, *a, **k)

    def bar(*a, **k):
        return SpyBar(events, lambda: current["run"].state)

    def save(self, make, name):
        if name.startswith("snapshot-"):
            events.append([current["run"].state.iteration, "snapshot"])
        return orig_save(self, make, name)

    orig_save = trainer.RunWriter.save
    trainer.log_point, trainer.tick_end = spy("log"), spy("tick_end")
    trainer.end_interval, trainer.stop_run = spy("evaluate"), spy("stop")
    trainer.epoch_progress, trainer.start_or_resume = bar, start_or_resume
    trainer.RunWriter.save = save
    try:
        base = {"model.name": "resnet8", "data.dir": str(data_dir), "data.val_size": 50, "train.batch_size": 25,
                "log.progress": True, "optim.lr": 0.05, "train.snapshots": []}
        cfg = load_config(None, {**base, **over})
        run_dir = None
        for i, stop_after in enumerate(calls):
            events.append([None, f"call {i}"])
            if run_dir is None:
                run_dir = trainer.train(cfg, runs_dir=tmp, run_name=name, stop_after=stop_after)
            else:
                trainer.train(resume=run_dir, stop_after=stop_after)
    finally:
        for n, f in originals.items():
            setattr(trainer, n, f)
        trainer.RunWriter.save = orig_save
    return events


def main() -> int:
    from reslab.data.synthetic import write_fake_cifar
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        data.mkdir()
        write_fake_cifar(data, per_batch=60, test=60, seed=0)
        out = {n: record(n, data, Path(d) / "runs") for n in SCENARIOS}
    FIXTURE.write_text(json.dumps(out, indent=0) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
