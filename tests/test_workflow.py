"""The Snakemake DAG: lint-clean, every stage present in a dry run, paper recipes dry-run with the SLURM profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
STAGES = {"fetch_local_knowledge", "fetch_test_data", "fetch_train_data", "build_index", "retrieval_check",
          "tiny_model", "sft", "train", "eval"}


def _snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _dry_run_jobs(out: str) -> set[str]:
    return {line.split(":")[0].split()[-1] for line in out.splitlines() if line.startswith(("rule ", "localrule "))}


def test_lint_is_clean(tmp_path):
    r = _snakemake("--lint", "--directory", str(REPO), "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr


def test_default_dry_run_shows_every_stage(tmp_path):
    r = _snakemake("-n", "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert STAGES <= _dry_run_jobs(r.stdout), _dry_run_jobs(r.stdout)


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_recipe_dry_runs_with_slurm_profile(recipe, tmp_path):
    r = _snakemake("-n", "--profile", "slurm", "--configfile", str(recipe), "--config", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _dry_run_jobs(r.stdout)
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
