"""Formatting and lint are part of the test suite: ruff for Python (snakefmt for the workflow: tests/workflow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_TREES = ["asearcher", "tests", "benchmarks", "workflow/scripts"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    return subprocess.run([exe, *args, *PYTHON_TREES], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_python_is_formatted():
    r = _ruff("format", "--check")
    assert r.returncode == 0, f"run `ruff format {' '.join(PYTHON_TREES)}`:\n{r.stdout}{r.stderr}"


def test_python_passes_lint():
    r = _ruff("check")
    assert r.returncode == 0, f"`ruff check` found problems:\n{r.stdout}{r.stderr}"
