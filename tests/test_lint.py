"""The tree passes ruff's lint ([tool.ruff] in pyproject.toml): unused imports and names, undefined names,
ambiguous names, lambdas bound to names, whitespace errors — caught by the test command, not by a reviewer."""
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
