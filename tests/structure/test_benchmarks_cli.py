"""Every benchmark script answers --help (exit 0, a description, nothing run) and none imports from tests/.

Scripts are benchmarks/*.py except helper modules whose name starts with "_" (benchmarks/_common.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, including those inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def test_there_are_benchmarks():
    assert len(_scripts()) >= 5, f"expected the benchmark scripts in {BENCH}"


def test_every_benchmark_answers_help():
    # All at once: each start-up imports torch/transformers, which dominates on a small machine.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = {
        p.name: subprocess.Popen(
            [sys.executable, str(p), "--help"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in _scripts()
    }
    failures = []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            failures.append(f"{name}: --help did not return within 600 s (does it run the benchmark?)")
            continue
        if proc.returncode != 0:
            failures.append(f"{name}: --help exited {proc.returncode}:\n{err[-1500:]}")
        elif not out.startswith("usage:") or len(out.strip().splitlines()) < 3:
            failures.append(f"{name}: --help printed no usage and description:\n{out[:500]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_benchmark_does_not_import_from_tests(path: Path):
    bad = [f"line {n}: {m}" for n, m in _imported_modules(path) if m == "tests" or m.startswith("tests.")]
    assert not bad, (
        f"{path.relative_to(REPO)} imports from the test suite ({'; '.join(bad)}); benchmarks use the package "
        "(asearcher/) and their own helpers (benchmarks/_common.py)"
    )


def test_import_scan_sees_nested_and_dynamic_imports(tmp_path: Path):
    f = tmp_path / "x.py"
    f.write_text(
        "import os\n"
        "def g():\n"
        "    from tests.rl.doubles import Sim\n"
        "    importlib.import_module('tests.fixtures')\n"
        "from .sibling import y\n"
    )
    assert sorted(m for _, m in _imported_modules(f)) == ["os", "tests.fixtures", "tests.rl.doubles"]
