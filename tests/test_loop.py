"""The training loop's per-iteration decisions (reslab.engine.cadence): every boundary as a table, and the whole
sequence against what the loop before the pure function did on recorded runs (tests/loop_events.py)."""
import json

import pytest

from reslab.config import Schedule
from reslab.engine.cadence import Cadence, Decision, decide

from loop_events import FIXTURE, SCENARIOS, record

# 10 iterations an epoch, 23 in all, an evaluation every 4, a log point every 3, snapshots at 6 and 23.
C = Cadence(total=23, steps_per_epoch=10, eval_every=4, log_every=3, snapshots=frozenset({6, 23}))
EVAL = dict(log=True, tick_end=True, close_bar=True, evaluate=True)  # a plain evaluation point

TABLE = [
    # iteration, stopping, what it calls for
    (1, False, Decision()),
    (3, False, Decision(log=True)),
    (4, False, Decision(**EVAL)),
    (6, False, Decision(snapshot=True, log=True)),
    (10, False, Decision(close_bar=True)),                         # epoch end, not an evaluation point
    (12, False, Decision(**EVAL)),                                 # evaluation and log point at once
    (20, False, Decision(**EVAL)),                                 # evaluation point = epoch end
    (22, False, Decision()),
    (23, False, Decision(snapshot=True, **EVAL)),                  # the last iteration is always evaluated
    (1, True, Decision(tick_end=True, stop=True)),                 # a stop off any point: checkpoint, return
    (3, True, Decision(log=True, tick_end=True, stop=True)),
    (10, True, Decision(close_bar=True, tick_end=True, stop=True)),
    (8, True, Decision(log=True, tick_end=True, close_bar=True, stop=True, pending_eval=True)),  # kept pending
    (20, True, Decision(log=True, tick_end=True, close_bar=True, stop=True, pending_eval=True)),
    (23, True, Decision(snapshot=True, **EVAL)),                   # a stop at the last iteration just finishes
]


@pytest.mark.parametrize("iteration,stopping,expected", TABLE)
def test_decide_at_every_boundary(iteration, stopping, expected):
    assert decide(iteration, C, stopping) == expected


def test_evaluation_and_stop_exclude_each_other_everywhere():
    for it in range(1, C.total + 1):
        for stopping in (False, True):
            d = decide(it, C, stopping)
            assert not (d.evaluate and d.stop)
            assert d.pending_eval == (d.stop and (it % C.eval_every == 0))
            assert d.log or not d.evaluate and not d.pending_eval  # every evaluation point is a log point
            assert d.tick_end or not (d.evaluate or d.stop)        # evaluation time is never training time


def test_cadence_defaults_from_the_config_zeros():
    sched = Schedule(steps_per_epoch=351, iterations=2106, milestones=[], snapshots=[0, 211, 1053, 2106])
    c = Cadence.of(sched, eval_every=0, log_every=0)
    assert (c.eval_every, c.log_every) == (351, 70)            # every epoch; a fifth of that
    assert c.snapshots == frozenset({211, 1053, 2106})         # iteration 0 is kept before the first step
    assert Cadence.of(sched, eval_every=3, log_every=0).log_every == 1


@pytest.mark.parametrize("iteration", [0, 24])
def test_decide_refuses_iterations_outside_the_run(iteration):
    with pytest.raises(ValueError, match=f"iteration {iteration} outside 1..23"):
        decide(iteration, C, False)


def test_every_scenario_is_recorded():
    assert set(json.loads(FIXTURE.read_text())) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_loop_takes_the_recorded_decisions(name, fake_dir, tmp_path):
    """Real tiny runs (stops at and off evaluation points, resumes, a pending evaluation) take exactly the actions,
    in exactly the order, that the loop before the decision function took on them."""
    assert record(name, fake_dir, tmp_path) == json.loads(FIXTURE.read_text())[name]
