"""The Snakemake DAG: lint-clean and snakefmt-formatted, every stage present in a dry run, paper recipes dry-run
with the SLURM profile, nothing written while parsing, an unchanged config reruns nothing, optional stages
switched by their `enabled` flag, logs and benchmark records in one tree, a conda env per rule."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = next(p for p in Path(__file__).resolve().parents if (p / "Snakefile").is_file())
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
STAGES = {
    "merged_config",
    "fetch_data",
    "build_index",
    "retrieval_check",
    "tiny_model",
    "sft",
    "synth",
    "train",
    "eval",
    "eval_web",
    "sweep_train",
    "sweep_runs",
    "report_evaluation",
    "report_training",
    "report_sweep",
}
# rules with a benchmark: directive
HEAVY = {"build_index", "sft", "synth", "train", "eval", "eval_web", "sweep_train", "sweep_eval"}
HEAVY |= {"report_evaluation", "report_training", "report_sweep"}
RULES = STAGES | {"sweep_eval"}  # every rule of the rule files (sweep_eval: only when a sweep evaluates)
NO_TORCH = {"fetch_data", "report_evaluation", "report_training", "report_sweep"}  # light envs


def _env() -> dict[str, str]:
    # the rules call `asearcher` (the console script beside this interpreter); no .pyc files in copied trees
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=_env()
    )


def _dry_run_jobs(out: str) -> set[str]:
    return {
        line.split(":")[0].split()[-1]
        for line in out.splitlines()
        if line.startswith(("rule ", "localrule "))
    }


def _job_blocks(out: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, {field: value}) for every job of a dry run's output."""
    blocks = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        if m:
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
            blocks.append((m.group(1), fields))
    return blocks


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _merge(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
    return base


def _default_config(tmp_path: Path, **sections) -> Path:
    """configs/default.yaml with results under tmp_path and `sections` merged over it."""
    cfg = _merge(yaml.safe_load((REPO / "configs/default.yaml").read_text()), sections)
    cfg["results_dir"] = str(tmp_path / "results")
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _copy_workflow(dst: Path) -> Path:
    """The files `snakemake` reads, in a fresh working directory (the asearcher package comes from the install)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dst / "Snakefile")
    for d in ("workflow", "configs", "notebooks"):
        shutil.copytree(REPO / d, dst / d)
    return dst


def test_lint_is_clean(tmp_path):
    r = _snakemake("--lint", "--directory", str(REPO), "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_dry_run_shows_every_stage(tmp_path):
    r = _snakemake("-n", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert STAGES <= _dry_run_jobs(r.stdout), _dry_run_jobs(r.stdout)


def test_default_dry_run_evaluates_once_on_the_local_web(tmp_path):
    """The CPU default evaluates one model on one benchmark in the web setting against its own retrieval server's
    local web: the web tools with search_url local and the direct reader, recording, a few questions, one sample."""
    r = _snakemake("-n", "-p", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    web = [f for rule, f in _job_blocks(r.stdout) if rule == "eval_web"]
    assert len(web) == 1, web
    assert web[0]["output"] == f"{tmp_path}/eval/tiny-sft/asearcher-localweb-top3/Bamboogle/aggregate.json"
    assert web[0]["output"] in _all_inputs(r.stdout)
    shell = next(line for line in r.stdout.splitlines() if "--setting asearcher-localweb-top3" in line)
    assert " with-retrieval " in shell and " eval --config " in shell and "--max-samples 4" in shell
    for o in ("tools.backend=web", "tools.web.search_url=local", "tools.web.reader=direct", "tools.web.record=record",
              "eval.k=1"):  # fmt: skip
        assert f"--set {o}" in shell, o


def test_logs_and_benchmarks_in_one_tree(tmp_path):
    """Every job logs to logs/<rule>/...; the heavy rules record runtime and memory in logs/benchmarks/<rule>/."""
    r = _snakemake("-n", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = [(rule, f) for rule, f in _job_blocks(r.stdout) if rule != "all"]
    assert {rule for rule, _ in jobs} == STAGES
    logs = []
    for rule, fields in jobs:
        assert fields.get("log", "").startswith(f"logs/{rule}/"), (rule, fields)
        logs.append(fields["log"])
        if rule in HEAVY:
            assert fields.get("benchmark", "").startswith(f"logs/benchmarks/{rule}/"), (rule, fields)
            assert fields["benchmark"].endswith(".tsv")
        else:
            assert "benchmark" not in fields, (rule, fields)
    assert len(logs) == len(set(logs)), "two jobs share a log file"


def test_rules_call_the_cli_without_progress_bars(tmp_path):
    """Every stage that runs `asearcher SUB` passes the global --no-progress, so rule logs hold no bars."""
    r = _snakemake("-n", "-p", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    commands = [line for line in r.stdout.splitlines() if "asearcher " in line]
    assert commands
    for line in commands:
        calls = re.findall(r"\basearcher (\S+)", line)
        assert calls and all(c == "--no-progress" for c in calls), line


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_recipe_dry_runs_with_slurm_profile(recipe, tmp_path):
    r = _snakemake(
        "-n", "--profile", "slurm", "--configfile", str(recipe), "--config", f"results_dir={tmp_path}"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _dry_run_jobs(r.stdout)
    assert "eval_web" not in jobs  # the local-web smoke evaluation belongs to CPU-scale runs only
    if not yaml.safe_load(recipe.read_text()).get("rl", {}).get("enabled", True):
        # an evaluation-only recipe (eval-*.yaml): released models x benchmarks, nothing trained or indexed
        assert recipe.stem.startswith("eval-") and "eval" in jobs
        from asearcher.config import load_config

        # indexed only when its agents search the local corpus (the local-setting recipes of Table 2)
        indexed = load_config(recipe).retrieval.enabled
        assert not ({"train", "sft", "synth"} | (set() if indexed else {"build_index"})) & jobs, jobs
        return
    assert {"train", "eval"} <= jobs
    # the training job asks SLURM for the recipe's GPUs across nodes
    train_block = r.stdout.split("rule train:")[1].split("\n\n")[0]
    assert "gres=gpu:8" in train_block and "nodes=16" in train_block


def test_invalid_config_stops_the_dag(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs/default.yaml").read_text() + "\nbogus_key: 1\n")
    r = _snakemake("-n", "--configfile", str(bad))
    assert r.returncode != 0
    assert "bogus_key" in (r.stdout + r.stderr)


# ---- nothing written while parsing -------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _tree_state(root: Path) -> tuple[list[str], dict[str, int]]:
    """`git status` (ignored files too) and every file's mtime, leaving out Snakemake's own .snakemake/."""
    status = [
        line
        for line in _git(root, "status", "--porcelain", "--ignored", "--untracked-files=all").splitlines()
        if not line[3:].startswith(".snakemake/")
    ]
    files = {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in (".git", ".snakemake")
    }
    return status, files


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dry_run_and_lint_leave_the_tree_untouched(tmp_path):
    """`snakemake -n` and `snakemake --lint` in a copy of the working tree, with the default config (results/ in
    the tree): git status, ignored files included, and every file's mtime are the same before and after."""
    listed = _git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    root = tmp_path / "repo"
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    before = _tree_state(root)
    for args in (
        ["-n"],
        ["--lint"],
        ["-n", "--profile", "slurm", "--configfile", "configs/paper/asearcher-local-7b.yaml"],
    ):
        r = _snakemake(*args, cwd=root)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _tree_state(root) == before, f"snakemake {' '.join(args)} changed the tree"


# ---- reruns -----------------------------------------------------------------------------------------------------
def test_unchanged_config_reruns_nothing(mirror_dir, tmp_path):
    """A cheap target (the merged config + the train-data release from the mirror) really runs; then an unchanged
    config has nothing to do, a change in another stage's section rewrites only the merged config, and a change in
    the data section reruns the fetch in the same invocation."""
    wd = _copy_workflow(tmp_path / "wd")
    mirror = {"source": "mirror", "mirror": str(Path(mirror_dir).resolve())}
    cfg = _default_config(tmp_path, data=mirror)
    target = str(tmp_path / "results/releases/ASearcher-train-data/manifest.json")

    r = _snakemake(target, "--cores", "1", "--configfile", str(cfg), cwd=wd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "results/cpu-default/config.yaml").is_file()
    assert (wd / "logs/fetch_data/ASearcher-train-data.log").is_file()
    assert (wd / "logs/merged_config/cpu-default.log").is_file()

    r = _snakemake(target, "-n", "--configfile", str(cfg), cwd=wd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout
    assert _dry_run_jobs(r.stdout) == set()

    other = _default_config(tmp_path, data=mirror, eval={"k": 1})
    r = _snakemake(target, "-n", "--configfile", str(other), cwd=wd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _dry_run_jobs(r.stdout) == {"merged_config"}

    data = _default_config(tmp_path, data={**mirror, "corpus_limit": 100})
    r = _snakemake(target, "-n", "--configfile", str(data), cwd=wd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _dry_run_jobs(r.stdout) == {"merged_config", "fetch_data"}


# ---- optional stages ----------------------------------------------------------------------------------------------
def _all_inputs(out: str) -> list[str]:
    fields = dict(_job_blocks(out))["all"]
    return [s.strip() for s in fields["input"].split(",")]


@pytest.mark.parametrize("rl_enabled", [True, False], ids=["rl-on", "rl-off"])
def test_training_is_a_final_output_iff_enabled(rl_enabled, tmp_path):
    r = _snakemake("-n", "--configfile", str(_default_config(tmp_path, rl={"enabled": rl_enabled})))
    assert r.returncode == 0, r.stdout + r.stderr
    targets = _all_inputs(r.stdout)
    metrics = str(tmp_path / "results/cpu-default/train/metrics.jsonl")
    assert (metrics in targets) is rl_enabled
    assert ("train" in _dry_run_jobs(r.stdout)) is rl_enabled
    # the RL output is evaluated only when RL runs; the SFT model either way
    evaluated = {t.split("/eval/")[1].split("/")[0] for t in targets if "/eval/" in t}
    assert evaluated == ({"tiny-sft", "tiny-rl"} if rl_enabled else {"tiny-sft"})


def test_eval_and_sft_switch_on_enabled(tmp_path):
    cfg = _default_config(tmp_path, eval={"enabled": False}, rl={"sft": {"enabled": False}})
    r = _snakemake("-n", "--configfile", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _dry_run_jobs(r.stdout)
    assert "eval" not in jobs and "sft" not in jobs and "train" in jobs


def test_training_on_synthesized_data_follows_rl_train_source(tmp_path):
    run = tmp_path / "results/cpu-default"
    for source, files in [
        ("released", [run / "sft/model/answerable.jsonl"]),
        ("synthesized", [run / "synth/train.jsonl"]),
        ("both", [run / "sft/model/answerable.jsonl", run / "synth/train.jsonl"]),
    ]:
        r = _snakemake(
            "-n", "-p", "--configfile", str(_default_config(tmp_path, rl={"train_source": source}))
        )
        assert r.returncode == 0, r.stdout + r.stderr
        train = dict(_job_blocks(r.stdout))["train"]
        assert (str(run / "synth/train.jsonl") in train["input"]) is (source != "released")
        shell = next(line for line in r.stdout.splitlines() if " train --config " in line)
        assert shell.split("--train ")[1].split(" --output")[0].split() == [str(f) for f in files], source
    # synthesized data without the stage that writes it: an error naming both keys, before anything runs
    cfg = _default_config(tmp_path, rl={"train_source": "both"}, synth={"enabled": False})
    r = _snakemake("-n", "--configfile", str(cfg))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "rl.train_source" in out and "synth.enabled" in out


def test_retrieval_cannot_be_off_for_local_search(tmp_path):
    r = _snakemake("-n", "--configfile", str(_default_config(tmp_path, retrieval={"enabled": False})))
    assert r.returncode != 0
    assert "retrieval.enabled" in r.stdout + r.stderr


# ---- conda envs and formatting -------------------------------------------------------------------------------------
def _rule_envs() -> dict[str, str | None]:
    """rule -> its conda: directive, read from the rule files."""
    envs = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            m = re.match(r"rule (\w+):", block)
            if m:
                c = re.search(r"^    conda:\n        \"([^\"]+)\"", block, re.M)
                envs[m.group(1)] = c.group(1) if c else None
    return envs


def test_every_stage_has_its_conda_env():
    from packaging.requirements import Requirement

    envs = _rule_envs()
    assert set(envs) == RULES
    assert envs.pop("merged_config") is None  # a `run:` block in the Snakemake process
    assert envs.pop("sweep_runs") is None  # writes runs.json in the Snakemake process
    assert len(set(envs.values())) > 3, "stages whose needs differ get different environments"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {Requirement(d).name: Requirement(d).specifier for d in project["dependencies"]}
    for rule, rel in envs.items():
        env_file = (REPO / "workflow/rules" / rel).resolve()
        assert env_file.parent == REPO / "workflow/envs", (rule, rel)
        spec = yaml.safe_load(env_file.read_text())
        assert "python=3.11" in spec["dependencies"]
        assert env_file.with_suffix(".post-deploy.sh").is_file(), "installs the asearcher package itself"
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        for line in pip:
            req = Requirement(line)
            if req.name in pins and str(pins[req.name]):
                assert req.specifier == pins[req.name], (env_file.name, line, str(pins[req.name]))
        java = "openjdk=21" in spec["dependencies"]
        assert java == (
            rule
            in {
                "build_index",
                "retrieval_check",
                "sft",
                "synth",
                "train",
                "eval",
                "eval_web",
                "sweep_train",
                "sweep_eval",
            }
        ), rule
        assert any(Requirement(x).name == "torch" for x in pip) == (rule not in NO_TORCH), rule


@pytest.mark.skipif(importlib.util.find_spec("snakefmt") is None, reason="snakefmt is not installed")
def test_snakefmt_check():
    r = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
