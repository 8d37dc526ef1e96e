"""Ablation sweeps: the sweep files are validated by the typed config (strict keys, each value built into a config
that must validate), the DAG expands a sweep into runs sharing one upstream, runs.json keeps its contract, and
every shipped sweep dry-runs with its recipe."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asearcher.config import ConfigError, parse_overrides
from asearcher.config.sweep import check_key, load_sweep, runs_json, set_options

REPO = next(p for p in Path(__file__).resolve().parents if (p / "Snakefile").is_file())
SWEEP_FILES = sorted((REPO / "configs/sweeps").glob("*.yaml"))


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _jobs(out: str) -> list[tuple[str, dict[str, str]]]:
    import re

    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", out):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        if m:
            jobs.append((m.group(1), dict(re.findall(r"^    (\w+): (.*)$", block, re.M))))
    return jobs


def _write(tmp_path: Path, name: str, body: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    return path


def _sweep(**over) -> dict:
    body = {
        "name": "s",
        "description": "test",
        "base": "configs/default.yaml",
        "parameter": "rl.max_head_offpolicyness",
        "values": [0, 2],
    }
    body.update(over)
    return body


# ---- the shipped sweeps ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_shipped_sweep_is_valid(path):
    loaded = load_sweep(path, root=REPO)
    sweep = loaded.sweep
    assert sweep.name == path.stem and sweep.description
    base = (
        yaml.safe_load((REPO / "configs/default.yaml").read_text())
        if loaded.base_raw is None
        else loaded.base_raw
    )
    configs = loaded.validate_runs(base)
    # each run's config really carries its value
    for cfg, value in zip(configs, (v.value for v in sweep.values), strict=True):
        node = cfg
        for part in sweep.parameter.split("."):
            node = getattr(node, part)
        assert node == value


def test_shipped_sweeps_cover_the_paper_ablations():
    by_parameter = {}
    for path in SWEEP_FILES:
        s = load_sweep(path, root=REPO).sweep
        if s.base != "current":
            assert (REPO / s.base).parent == REPO / "configs/paper", (
                s.base
            )  # paper scale, over a paper recipe
            by_parameter[s.parameter] = [v.value for v in s.values]
    assert by_parameter["agent.max_turns"] == [10, 32, 128]
    assert by_parameter["rl.max_head_offpolicyness"] == [0, 1, 4, 8]
    assert len(by_parameter["agent.topk"]) >= 2
    assert by_parameter["rl.reward"] == ["f1", "em", "judge"]
    assert by_parameter["rl.advantage"] == ["areal", "grpo"]


def test_cpu_default_runs_a_small_sweep():
    cfg = yaml.safe_load((REPO / "configs/default.yaml").read_text())
    assert cfg["sweeps"], "the CPU default runs one sweep end to end"
    for f in cfg["sweeps"]:
        loaded = load_sweep(REPO / f, root=REPO)
        assert loaded.sweep.base == "current"
        for run_cfg in loaded.validate_runs(cfg):  # a few steps: well under the default's own RL run
            assert (
                run_cfg.rl.steps * run_cfg.rl.batch_size <= cfg["rl"]["steps"] * cfg["rl"]["batch_size"] / 8
            )


# ---- validation -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "over, names",
    [
        ({"parameter": "rl.max_staleness"}, ["parameter", "rl.max_staleness", "max_head_offpolicyness"]),
        ({"parameter": "rl.steps.x"}, ["parameter", "rl.steps.x", "not a section"]),
        ({"values": [0, -1]}, ["values[1]", "rl.max_head_offpolicyness", "-1"]),
        ({"parameter": "rl.reward", "values": ["f1", "bleu"]}, ["values[1]", "rl.reward", "bleu"]),
        ({"overrides": {"rl.steps": 0}}, ["rl.steps", "values[0]"]),
        ({"overrides": {"rl.nope": 1}}, ["overrides.rl.nope", "nope"]),
        ({"bogus": 1}, ["bogus", "unknown key"]),
        ({"values": [0, 0]}, ["values", "share the value"]),
        ({"values": []}, ["values"]),
        ({"parameter": "rl.sft.epochs", "values": [1, 2]}, ["parameter", "rl.sft", "share"]),
        ({"parameter": "engine.model", "values": ["a", "b"]}, ["parameter", "engine.model"]),
        ({"overrides": {"rl.max_head_offpolicyness": 1}}, ["overrides.rl.max_head_offpolicyness", "varied"]),
        ({"base": "configs/paper/nope.yaml"}, ["base", "nope.yaml"]),
        ({"name": "other"}, ["name", "other", "file name"]),
    ],
    ids=[
        "unknown-key", "leaf-as-section", "invalid-value", "invalid-choice", "invalid-override", "unknown-override",
        "unknown-sweep-key", "duplicate-value", "no-values", "upstream-key", "base-model", "override-of-parameter",
        "missing-base", "name-mismatch",
    ],
)  # fmt: skip
def test_bad_sweep_is_an_error_naming_file_and_key(tmp_path, over, names):
    path = _write(tmp_path, "s", _sweep(**over))
    with pytest.raises(ConfigError) as e:
        load_sweep(path, root=REPO)
    msg = str(e.value)
    assert str(path) in msg, msg
    for name in names:
        assert name in msg, (name, msg)


def test_check_key_accepts_settings_and_sections():
    for key in (
        "rl.max_head_offpolicyness",
        "rl.optim.lr",
        "agent.max_turns",
        "eval.judge.model",
        "rl.optim",
    ):
        check_key(key)
    with pytest.raises(ValueError, match="has no 'lrr'"):
        check_key("rl.optim.lrr")


@pytest.mark.parametrize(
    "value", [0, 2.5, "f1", "true", "4", "null", True, None, [1, 2], {"lr": 1e-3}, "a b"]
)
def test_set_options_round_trip_through_the_cli_parser(value):
    """What a sweep run passes as `--set` is read back by the CLI as the very value (a string that YAML would take
    for a number, bool or null stays a string)."""
    argv = shlex.split(set_options([("rl.x", value)]))
    assert argv[0] == "--set"
    assert parse_overrides(argv[1::2]) == [("rl.x", value)]


def test_runs_json_contract():
    loaded = load_sweep(REPO / "configs/sweeps/turn-limit.yaml", root=REPO)
    doc = runs_json(loaded, "results")
    assert set(doc) == {"sweep", "parameter", "label", "description", "runs"}
    assert doc["sweep"] == "turn-limit" and doc["parameter"] == "agent.max_turns"
    assert [r["value"] for r in doc["runs"]] == [10, 32, 128]
    for run in doc["runs"]:
        assert set(run) == {"value", "name", "train_dir", "eval"}
        assert run["train_dir"] == f"results/sweeps/turn-limit/{run['value']}/train"
        assert set(run["eval"]) == set(loaded.sweep.eval)
        assert all(
            p == f"results/sweeps/turn-limit/{run['value']}/eval/{b}/aggregate.json"
            for b, p in run["eval"].items()
        )


# ---- the DAG ----------------------------------------------------------------------------------------------------
def test_default_dag_runs_the_cpu_sweep_from_the_shared_sft(tmp_path):
    r = _snakemake("-n", "-p", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _jobs(r.stdout)
    runs = [f for rule, f in jobs if rule == "sweep_train"]
    assert sorted(f["wildcards"] for f in runs) == ["sweep=cpu-eta, value=0", "sweep=cpu-eta, value=2"]
    all_inputs = dict(jobs)["all"]["input"]
    assert f"{tmp_path}/sweeps/cpu-eta/runs.json" in all_inputs
    shells = [
        line for line in r.stdout.splitlines() if "/sweeps/cpu-eta/" in line and " train --config " in line
    ]
    assert len(shells) == 2
    train_shell = next(
        line for line in r.stdout.splitlines() if " train --config " in line and "/sweeps/" not in line
    )
    for eta, shell in zip(("0", "2"), sorted(shells, key=lambda s: s.split("--output ")[1]), strict=True):
        assert f"--set rl.max_head_offpolicyness={eta} " in shell
        assert "--set rl.steps=" in shell and f"--output {tmp_path}/sweeps/cpu-eta/{eta}/train " in shell
        # the same warm start and questions as the run's own RL stage
        for opt in ("--model", "--train"):
            assert shell.split(f"{opt} ")[1].split()[0] == train_shell.split(f"{opt} ")[1].split()[0]
        assert f"--model {tmp_path}/cpu-default/sft/model" in shell


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_sweep_dry_runs_with_its_recipe(path, tmp_path):
    sweep = load_sweep(path, root=REPO).sweep
    recipe = [] if sweep.base == "current" else ["--configfile", sweep.base]
    r = _snakemake(f"sweep_{sweep.name}", "-n", *recipe, "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _jobs(r.stdout)
    trains = [f for rule, f in jobs if rule == "sweep_train"]
    evals = [f for rule, f in jobs if rule == "sweep_eval"]
    assert len(trains) == len(sweep.values) and len(evals) == len(sweep.values) * len(sweep.eval)
    assert {rule for rule, _ in jobs} >= {"sweep_runs", f"sweep_{sweep.name}"}
    assert "train" not in {rule for rule, _ in jobs}  # the recipe's own RL run is not part of a sweep


def test_sweep_over_another_recipe_names_the_command(tmp_path):
    r = _snakemake("sweep_turn-limit", "-n", "--config", f"results_dir={tmp_path}")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "--configfile configs/paper/asearcher-local-7b.yaml" in out, out


def test_sweep_whose_runs_need_another_job_shape_is_an_error(tmp_path):
    """rule sweep_train declares this run's resource keys: a run that would need GPUs where this one has none is
    refused at parse time, naming the sweep, the run and the keys, instead of being submitted without GPUs."""
    path = _write(tmp_path, "s", _sweep(parameter="rl.trainer_gpus", values=[0, 1]))
    r = _snakemake("sweep_s", "-n", "--config", f"results_dir={tmp_path}", f"sweeps=[{path}]")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert str(path) in out and "run '1'" in out and "rl.trainer_gpus=1" in out and "'gpu'" in out, out


def test_sweep_eval_evaluates_the_runs_model(tmp_path):
    r = _snakemake("sweep_staleness", "-n", "-p", "--configfile", "configs/paper/asearcher-local-7b.yaml",
                   "--config", f"results_dir={tmp_path}")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    shells = [
        line for line in r.stdout.splitlines() if " eval --config " in line and "/sweeps/staleness/4/" in line
    ]
    assert len(shells) == 4, shells
    for shell in shells:
        argv = shlex.split(shell.split(" -- ", 1)[1])
        sets = parse_overrides([argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
        assert ("rl.max_head_offpolicyness", 4) in sets
        model = dict(sets)["models.sweep-run"]
        assert model["model"] == f"{tmp_path}/sweeps/staleness/4/train/final"
        assert (
            model["kind"] == "vllm" and model["tensor_parallel_size"] == 4
        )  # as the recipe's own trained model
        assert argv[argv.index("--model") + 1] == "sweep-run"


def test_runs_json_is_written_by_the_dag(tmp_path):
    """sweep_runs really runs (its upstream faked): runs.json as the report reads it."""
    cfg = yaml.safe_load((REPO / "configs/default.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    for value in ("0", "2"):
        train = tmp_path / f"results/sweeps/cpu-eta/{value}/train"
        train.mkdir(parents=True)
        (train / "summary.json").write_text("{}")
    target = str(tmp_path / "results/sweeps/cpu-eta/runs.json")
    r = _snakemake(target, "--cores", "1", "--configfile", str(cfg_path), "--allowed-rules", "sweep_runs",
                   "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(Path(target).read_text())
    assert doc["sweep"] == "cpu-eta" and doc["parameter"] == "rl.max_head_offpolicyness"
    assert [(run["value"], run["train_dir"]) for run in doc["runs"]] == [
        (0, f"{tmp_path}/results/sweeps/cpu-eta/0/train"),
        (2, f"{tmp_path}/results/sweeps/cpu-eta/2/train"),
    ]
    assert all(run["eval"] == {} for run in doc["runs"])
