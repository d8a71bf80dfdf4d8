"""What a study's report shows first and how it shows it: the verdict summary, the ranking against the noise,
the throughput column, and figures that read on white."""
import dataclasses
import pytest

from reslab.analysis.verdicts import MARKS, Comparison, Verdict, judge, not_assessed
from reslab.analysis.responses import ResponseProfile, responses_figure
from reslab.plotting import DEPTH_PALETTE, contrast_ratio, depth_colors, model_color, plt
from reslab.report.document import MARK_STYLES, Document, Marks, to_html, to_markdown
from reslab.report.sections import (median_rate, ranking_section, throughput_note, uneven_runs,
                                    verdict_blocks)
from reslab.study.results import ModelResult, RunResult, load_study


@pytest.fixture(scope="module")
def report(tiny_degradation_report):
    """The tiny study's report: the study dir, report.md, report.html and the verdicts."""
    out = tiny_degradation_report
    return out["study"], out["md"].read_text(), out["html"].read_text(), out["verdicts"]


def _timed(name: str, *runs_rates: list[float]) -> ModelResult:
    """A finished model whose runs (one per list) logged these training img/s, one per evaluation interval."""
    runs = [RunResult(f"{name}-s{i}", name, "resnet", 8, i, "finished", {},
                      [{"iteration": 10 * (k + 1), "images_per_s": x} for k, x in enumerate(rates)], None, None)
            for i, rates in enumerate(runs_rates)]
    return ModelResult(name, "resnet", 8, runs)


# ---- 1. the verdict summary ------------------------------------------------------------------------------------

def test_each_verdict_gets_one_of_four_marks_from_the_engine():
    within = Comparison(a=51.0, b=50.0, noise=3.0, why="2 standard errors")
    assert judge(within)[1] is None and Verdict("x", judge(within)[0], judge(within)[1]).mark == "not separable"
    assert Verdict("x", "", True).mark == "reproduced" and Verdict("x", "", False).mark == "not reproduced"
    # not assessed is also reproduced=None, but must not read as "within noise"
    missing = not_assessed("Degradation", "two plain nets")
    assert missing.reproduced is None and missing.mark == "not assessed"
    assert set(MARK_STYLES) == set(MARKS)


def test_badges_carry_the_word_and_read_on_their_background():
    for mark, (symbol, bg, fg) in MARK_STYLES.items():
        assert contrast_ratio(fg, bg) >= 4.5, mark
    vs = [Verdict("Claim <A>", "A in words.", True), Verdict("Claim B", "B in words.", None),
          not_assessed("Claim C", "runs")]
    doc = Document("t").add(*verdict_blocks(vs))
    md = to_markdown(doc, ".")
    assert "- ✔ **reproduced** — Claim <A>\n- ≈ **not separable** — Claim B\n- – **not assessed** — Claim C" in md
    assert md.index("Claim B\n") < md.index("### In detail") < md.index("- B in words.")
    html = to_html(doc)
    assert "<span class='mark mark-not-separable' style='background:#f2c94c;color:#3d2b00'>≈ not separable</span> " \
           "Claim B" in html
    assert "Claim &lt;A&gt;" in html  # claims are escaped like any text
    assert to_html(Document("t").add(Marks([("reproduced", "x")]))).count("class='mark mark-reproduced'") == 1


def test_the_report_opens_with_one_marked_line_per_claim(report):
    _, md, html, verdicts = report
    lines = md.splitlines()
    assert lines[2] == "## Verdicts"
    summary = lines[4:4 + len(verdicts)]
    assert [(v.mark, v.claim) for v in verdicts] == [(ln.split("**")[1], ln.split(" — ", 1)[1]) for ln in summary]
    claims = [v.claim for v in verdicts]
    assert len(set(claims)) == len(claims)  # one distinct line per claim
    assert {"Degradation (plain14 vs plain8)", "Residual cure at depth 8", "Residual cure at depth 14"} <= set(claims)
    assert any(c.startswith("Fig. 7: resnet14 responses smaller than plain14") for c in claims)
    assert html.index("<ul class='marks'>") < html.index("<h2>Protocol</h2>")
    assert html.count("<span class='mark mark-") == len(verdicts)


# ---- 3. the ranking against the noise --------------------------------------------------------------------------

def test_ranking_marks_neighbours_within_noise_and_names_the_yardstick(tiny_degradation_study):
    study = load_study(tiny_degradation_study)
    finals = {"resnet14": 10.0, "resnet8": 12.0, "plain8": 50.0, "plain14": 75.0}  # test error, on 40 images
    models = {m.model: m for m in study.models()}
    for name, err in finals.items():
        models[name].runs[0].summary = dataclasses.replace(models[name].runs[0].summary, final={"test_error": err})
    ranked = [models[n] for n in finals]
    heading, table, note = ranking_section(study, ranked)
    assert [r[:2] for r in table.rows] == [["1", "resnet14"], ["=1", "resnet8"], ["3", "plain8"], ["4", "plain14"]]
    assert table.rows[1][-1].startswith("= within noise of resnet14 (+2.00, noise ±")
    assert table.rows[2][-1].startswith("+38.00 (beyond ±") and table.rows[0][-1] == ""
    assert "2 standard errors of sampling noise on 40 images" in note.text
    # the same two models 2 points apart on the full 10k test set are separable: the yardstick follows the images
    for r in study.runs:
        r.test_eval = {**(r.test_eval or {}), "n": 10000}
    assert [r[0] for r in ranking_section(study, ranked)[1].rows] == ["1", "2", "3", "4"]


def test_the_written_ranking_states_its_yardstick(report):
    _, md, _, _ = report
    ranking = md[md.index("## Ranking"):md.index("## Against the paper")]
    assert "| rank | model | final test err % | vs the one above |" in ranking
    yardstick = "Yardstick (the verdicts' own without paired tests): 2 standard errors of sampling noise on 40 images"
    assert yardstick in ranking


# ---- 2. throughput ---------------------------------------------------------------------------------------------

def test_throughput_is_the_median_interval_and_uneven_runs_are_named():
    steady = _timed("steady", [50.0, 200.0, 210.0, 190.0])   # slow first interval: start-up, not load
    loaded = _timed("loaded", [200.0, 205.0, 90.0, 210.0])   # a loaded stretch in the middle
    short = _timed("short", [50.0, 200.0])                   # two intervals: the first one counts
    assert median_rate(steady) == 195.0 and median_rate(_timed("none", [])) is None
    assert median_rate(_timed("seeds", [100.0, 300.0], [200.0])) == 200.0  # over every interval of every seed
    assert uneven_runs([steady, loaded, short]) == [("loaded-s0", 90.0, 210.0), ("short-s0", 50.0, 200.0)]
    note = throughput_note([steady, loaded])
    assert "within a run: loaded-s0 (90 to 210 img/s)" in note and "steady" not in note
    assert "Throughput varied" not in throughput_note([steady])


def test_the_results_table_shows_the_median_img_per_s(report):
    study, md, _, _ = report
    runs = {m.model: m for m in load_study(study).models()}
    row = next(line for line in md.splitlines() if line.startswith("| resnet8 |"))
    assert row.split(" | ")[8] == f"{median_rate(runs['resnet8']):.0f}"
    assert "| wall s | median img/s | runs |" in md and "img/s: the median over the run's evaluation intervals" in md


# ---- 4. figures that read on white -----------------------------------------------------------------------------

def test_every_line_colour_stands_out_on_white():
    for n in range(1, len(DEPTH_PALETTE) + 1):
        colours = depth_colors(range(n))
        assert len(set(colours.values())) == n  # one distinct colour per depth
        assert all(contrast_ratio(c) >= 3 for c in colours.values()), colours
    for n in range(1, 6):
        for group in ("plain", "resnet"):
            assert all(contrast_ratio(model_color(group, d, range(n))) >= 3 for d in range(n)), (group, n)


def test_both_response_panels_have_a_legend_and_whole_layer_ticks():
    profiles = [ResponseProfile(f"{g}8-s0", f"{g}8", g, 8, "", 12, "test", 40, ["a", "b", "c"], std, [])
                for g, std in (("plain", [1.0, 1.2, 0.9]), ("resnet", [0.8, 0.7, 0.6]))]
    fig = responses_figure(profiles)
    try:
        for ax in fig.axes:
            assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain8-s0", "resnet8-s0"]
            ticks = [t for t in ax.xaxis.get_majorticklocs() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks  # 3 layers: never 1.5, 2.5
    finally:
        plt.close(fig)


def test_one_net_from_two_sources_gets_two_colours_and_markers():
    # resnet20 (akamaster) against resnet20@reslab: same group and depth, so the per-depth colour would be shared.
    profiles = [ResponseProfile(label, "resnet20", "resnet", 20, "", None, "test", 40, ["a", "b"], std, [])
                for label, std in (("resnet20", [0.6, 0.5]), ("resnet20@reslab", [0.7, 0.4]))]
    fig = responses_figure(profiles)
    try:
        top, bottom = fig.axes
        assert len({line.get_color() for line in top.lines}) == 2
        assert len({line.get_color() for line in bottom.lines}) == 2
        assert len({line.get_marker() for line in top.lines}) == 2  # told apart without colour too
        assert all(contrast_ratio(line.get_color()) >= 3 for line in top.lines)
    finally:
        plt.close(fig)
