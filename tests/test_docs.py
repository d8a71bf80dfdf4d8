"""The documentation: the site builds with broken links as errors, its CLI reference is `--help`, the README
stays short, and examples/quickstart.ipynb runs end to end on tiny generated data."""
from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_STUDY
from reslab.analysis.verdicts import MARKS
from reslab.cli import COMMANDS, main
from reslab.data.pipeline import Normalizer
from reslab.models import create_model
from reslab.weights.files import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def load_gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_cli = load_gen_cli()


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_cli_reference_is_the_help_of_every_command(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", str(gen_cli.WIDTH))
    pages = gen_cli.help_pages()
    named = {argv[0] for argv, _ in pages if argv}
    assert named == set(COMMANDS)
    assert ["study", "degradation"] in [argv for argv, _ in pages]
    for argv, text in pages:
        assert text == help_of(argv, capsys), argv


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    narrow = gen_cli.reference_markdown()
    monkeypatch.setenv("COLUMNS", "250")
    assert gen_cli.reference_markdown() == narrow
    assert os.environ["COLUMNS"] == "250"  # put back as it was
    assert max(len(line) for _, text in gen_cli.help_pages() for line in text.splitlines()) <= gen_cli.WIDTH


def test_cli_reference_matches_a_real_reslab_process():
    env = {**os.environ, "COLUMNS": str(gen_cli.WIDTH), "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-m", "reslab", "study", "degradation", "--help"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == dict((tuple(a), t) for a, t in gen_cli.help_pages())[("study", "degradation")]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the site needs mkdocs-material: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the API pages need mkdocstrings-python")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def page_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))


def test_site_builds_strict_with_every_page(site):
    for page in ["index.html", "getting-started/index.html", "studies/quick/index.html", "studies/hour/index.html",
                 "studies/paper/index.html", "reading-a-report/index.html", "models-and-weights/index.html",
                 "training-and-configs/index.html", "clusters-and-trackers/index.html", "reliability/index.html",
                 "speed/index.html", "api/index.html", "architecture/index.html", "cli/index.html",
                 "quick-study/report/index.html"]:
        assert (site / page).is_file(), page
    assert (site / "quick-study" / "figure6.png").is_file()


def test_site_cli_page_holds_every_help_text(site):
    text = page_text(site / "cli" / "index.html")
    assert gen_cli.MARKER not in (site / "cli" / "index.html").read_text()
    for argv, help_text in gen_cli.help_pages():
        for line in help_text.splitlines():
            assert line in text, (argv, line)


def test_site_api_page_is_generated_from_docstrings(site):
    text = page_text(site / "api" / "index.html")
    for name in ["create_model", "plan_degradation", "run_study", "write_report", "load_config"]:
        assert name in text
    assert "Build a registered model by name" in text  # create_model's docstring


def test_site_speed_page_includes_the_benchmark_notes(site):
    text = page_text(site / "speed" / "index.html")
    assert "Training step: reslab vs the conventional pipeline" in text
    assert "benchmarks/results/" in text


def test_site_reports_name_their_machine(site):
    for report in ["quick-study", "quick-study-3seeds", "imagenet-style-quick"]:
        assert "Measured on AMD EPYC Zen 1, 2 cores" in page_text(site / report / "report" / "index.html"), report


def test_site_loads_nothing_from_the_network(site):
    remote = re.compile(r"""<(?:link|script|img)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//""", re.I)
    for page in site.rglob("*.html"):
        assert not remote.search(page.read_text(encoding="utf-8")), page


def test_readme_is_short_and_points_into_the_site():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 125
    command = "reslab study degradation --profile quick"
    assert f"{command}\n" in readme or f"{command} " in readme
    assert "../shared/data" not in readme
    for link in re.findall(r"\]\(([^)#]+)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


# ---- examples/quickstart.ipynb ---------------------------------------------------------------------------------

def stand_in_weights(folder: Path) -> Path:
    """Checkpoints in reslab's format where the notebook loads published weights (those are sha256-checked, so a
    test cannot fake them): freshly initialised resnet20 and resnet56 with a stated normalisation."""
    folder.mkdir()
    norm = Normalizer("channel", torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26]), note="stand-in")
    for name in ("resnet20", "resnet56"):
        torch.manual_seed(0)
        save_checkpoint({"kind": "imported", "model": {"name": name, "kwargs": {}},
                         "model_state": create_model(name).state_dict(), "normalization": norm.state_dict(),
                         "config": None}, folder / f"{name}.pt")
    return folder


def outputs_of(nb) -> tuple[str, int]:
    """All printed text of an executed notebook, and how many PNG images it displayed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            elif "image/png" in out.get("data", {}):
                images += 1
            if out.get("output_type") == "error":
                raise AssertionError("\n".join(out["traceback"]))
    return "".join(text), images


def test_quickstart_notebook_runs_on_tiny_data(tmp_path, fake_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (the test extra)")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (the test extra)")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (the test extra)")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    install = [c for c in nb.cells if "install" in c.get("metadata", {}).get("tags", [])]
    assert len(install) == 1 and "pip" in install[0].source
    nb.cells = [c for c in nb.cells if c not in install]

    study = tmp_path / "study"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RESLAB_DATA_DIR", str(fake_dir))
    monkeypatch.setenv("RESLAB_NOTEBOOK_PROFILE", "quick")
    monkeypatch.setenv("RESLAB_NOTEBOOK_DEPTHS", "8,14")
    monkeypatch.setenv("RESLAB_NOTEBOOK_SET", json.dumps(TINY_STUDY))
    monkeypatch.setenv("RESLAB_NOTEBOOK_OUT", str(study))
    monkeypatch.setenv("RESLAB_NOTEBOOK_WEIGHTS", str(stand_in_weights(tmp_path / "weights")))
    monkeypatch.setenv("RESLAB_NOTEBOOK_IMAGES", "60")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    text, images = outputs_of(nb)
    assert "profile quick; depths (8, 14)" in text
    verdicts = [line for line in text.splitlines() if line.startswith("verdict: ")]
    assert len(verdicts) >= 3, text
    for line in verdicts:
        assert line.rsplit(": ", 1)[1] in MARKS, line
    assert any("Degradation" in line for line in verdicts)
    figures = sorted(p.name for p in (study / "report").glob("*.png"))
    assert {"figure6.png", "pairs.png", "lr.png"} <= set(figures)
    assert images >= 4  # the report's figures, then Fig. 7 on the (stand-in) published weights
    assert (study / "figure7-published.png").is_file()
    assert "resnet20: 19 layers" in text and "resnet56: 55 layers" in text
    assert (study / "report" / "report.md").is_file()
