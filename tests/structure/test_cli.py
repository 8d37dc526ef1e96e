"""One CLI style: --config and --set on every subcommand, global options on either side, --version, and help
examples that name files which exist (or that the DAG writes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from asearcher.cli import COMMANDS, build_subparser, main

REPO = Path(__file__).resolve().parents[2]
# paths the default DAG writes (results/ is git-ignored); anything else an example names must be in the repo
DAG_OUTPUTS = ("results/releases", "results/index/", "results/models/tiny", "results/cpu-default/",
               "results/eval/", "results/rl/")  # fmt: skip


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_takes_the_common_options(name):
    sub, _ = build_subparser(name)
    opts = {s for a in sub._actions for s in a.option_strings}
    assert {"--config", "--set", "--log-level", "--no-progress"} <= opts, name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_examples_name_files_that_exist(name):
    sub, module = build_subparser(name)
    text = (module.__doc__ or "") + sub.format_help()
    for path in re.findall(
        r"(?<![\w/.$<-])((?:configs|workflow|results|benchmarks|asearcher|data)/[\w./<>{}*-]*\w)", text
    ):
        if path.startswith("results/"):
            assert path.startswith(DAG_OUTPUTS), f"{name}: example names {path}, which the DAG never writes"
        elif not any(c in path for c in "<>{}*"):
            assert (REPO / path).exists(), f"{name}: example names {path}, which does not exist"


def test_overrides_and_global_options_on_either_side(capsys):
    assert main(["config", "show", "--set", "rl.steps=3", "--set", "eval.k=2", "--log-level", "warning"]) == 0
    out = capsys.readouterr().out
    assert "steps: 3" in out and "k: 2" in out
    assert (
        main(["--log-level", "ERROR", "config", "validate", "--config", str(REPO / "configs/default.yaml")])
        == 0
    )
    assert main(["config", "validate", "--set", "rl.steps=-1"]) == 2
    assert "rl.steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # positional overrides are gone: one syntax
        main(["config", "show", "rl.steps=3"])
    assert e.value.code == 2


def test_version_and_no_progress(capsys):
    from asearcher.utils.progress import progress_enabled

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and re.match(r"asearcher \S+", capsys.readouterr().out)
    assert progress_enabled()  # (the conftest fixture restores the environment after this test)
    assert main(["config", "validate", "--no-progress"]) == 0
    assert not progress_enabled()  # and so do the processes this one starts
