"""The README's two set-up commands: CI runs the test command verbatim, and both install the same way."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_command(label: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(re.escape(label) + r".*?```bash\n(.+?)\n```", text, re.S)
    assert m, f"README.md has no bash block after {label!r}"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    ci = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert readme_command("**Run the tests:**") in ci


def test_both_commands_set_up_the_same_environment():
    main, tests = readme_command("**Run the CPU default DAG**"), readme_command("**Run the tests:**")
    setup = lambda cmd: cmd.replace(" -q", "").rsplit(" && ", 1)[0]  # noqa: E731
    assert setup(main) == setup(tests)
    assert main.endswith("snakemake --cores all") and tests.endswith("pytest -n 2")
    # torch is pinned in the same install as the project: unpinned, the resolver picks a CUDA build (2+ GB)
    assert "torch==" in setup(main)
