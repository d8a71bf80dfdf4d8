"""The tree passes ruff's lint ([tool.ruff] in pyproject.toml): unused imports and names, undefined names,
ambiguous names, lambdas bound to names, whitespace errors — and mypy's type check of the engine, the config, the
studies and the verdict engine ([tool.mypy]) — caught by the test command, not by a reviewer."""
import shutil
import subprocess

import pytest

from conftest import REPO


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is in the test extra (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_would_catch_an_unused_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    res = subprocess.run([shutil.which("ruff") or "ruff", "check", "--no-cache", "--config",
                          str(REPO / "pyproject.toml"), str(bad)], capture_output=True, text=True)
    assert res.returncode == 1 and "F401" in res.stdout


def mypy_command() -> list[str]:
    mypy = shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is not installed: it is in the test extra (pip install -e '.[test]')")
    return [mypy, "--no-incremental", "--config-file", str(REPO / "pyproject.toml")]


def test_mypy_finds_nothing():
    res = subprocess.run(mypy_command(), cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_would_catch_an_optional_used_as_a_value(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pathlib import Path\n\n\ndef name(p: Path | None) -> str:\n    return p.name\n")
    res = subprocess.run(mypy_command() + [str(bad)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 1 and "union-attr" in res.stdout, res.stdout
