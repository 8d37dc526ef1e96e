"""The SLURM run as the README writes it, `snakemake --cores all --profile slurm`, checked offline.

- Snakemake resolves `--profile slurm` from the repository root to the profile shipped in slurm/, and the profile
  hard-codes no partition or account (it takes the user's SBATCH_PARTITION / SBATCH_ACCOUNT).
- Every paper recipe and every sweep dry-runs through the profile; the resources of each job (GPUs, nodes, memory,
  runtime) are those of the recipe's `cluster:` section and its models, and the SLURM executor plugin's own
  submit-string code turns them into the sbatch flags a cluster accepts (one task per node for the multi-node
  training job, no --ntasks-per-gpu).
- Light rules stay on the login node (`localrules`).
- workflow/scripts/ray_on_slurm.sh, run against fake `srun`, `scontrol` and `ray` that log their arguments, starts
  the Ray head first, then one worker per other node, runs the command with RAY_ADDRESS set and stops the steps
  on exit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from asearcher.config import load_config
from asearcher.config.sweep import load_sweep

REPO = next(p for p in Path(__file__).resolve().parents if (p / "Snakefile").is_file())
PROFILE_FILE = REPO / "slurm" / "profile.v9+.yaml"
RECIPES = sorted((REPO / "configs/paper").glob("*.yaml"))
SWEEPS = {p.stem: load_sweep(p, root=REPO) for p in sorted((REPO / "configs/sweeps").glob("*.yaml"))}
LOCAL_RULES = {"all", "merged_config", "fetch_data", "sweep_runs"}
GPU_RULES = {"train", "sweep_train", "eval", "eval_web", "sweep_eval", "build_index"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "SLURM_"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", **extra)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    """`snakemake -n --profile slurm ...` from the repository root, as the README runs it."""
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or _env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Using profile slurm" in r.stderr
    return r.stdout


def _value(text: str):
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _jobs(out: str) -> list[tuple[str, dict[str, str], dict]]:
    """(rule, fields, resources) for every job of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", out):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        if m:
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
            res = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
            jobs.append((m.group(1), fields, {k: _value(v) for k, v in res.items()}))
    return jobs


class _Resources(dict):
    """Job resources the way the plugin reads them: .get() and attribute access."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _sbatch(rule: str, resources: dict) -> str:
    """The sbatch command line snakemake-executor-plugin-slurm builds for a job with these resources (its own
    submit-string code; account and partition left to the user's settings, so none here)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=1, name=rule)
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "logs/slurm/%j.log",
        "comment_str": f"rule_{rule}",
        "account": "",
        "partition": "",
        "workdir": str(REPO),
    }
    return get_submit_command(job, params) + set_gres_string(job)


def _jobstep_srun(resources: dict) -> str | None:
    """The `srun` the plugin's job step wraps a one-node job's command in (None: it runs the command itself)."""
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting, get_node_setting

    if "mpi" in resources:
        return None
    job = SimpleNamespace(resources=_Resources(resources), threads=1)
    return f"srun -n1 {get_cpu_setting(job, False)} {get_gpu_setting(job)} {get_node_setting(job)}"


def _profile(**env: str) -> dict:
    """The profile as Snakemake's own parser reads it (YTE expressions evaluated in this environment)."""
    from snakemake.profiles import ProfileConfigFileParser

    saved = dict(os.environ)
    try:
        for k in [k for k in os.environ if k.startswith("SBATCH_")]:
            del os.environ[k]
        os.environ.update(env)
        with open(PROFILE_FILE) as f:
            return dict(ProfileConfigFileParser().parse(f))
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- the profile --------------------------------------------------------------------------------------------------
def test_profile_slurm_resolves_to_the_shipped_file(monkeypatch):
    """From the repository root, `--profile slurm` is the slurm/ directory here, and the file Snakemake reads in it
    is profile.v9+.yaml (a name it would skip leaves the profile silently empty)."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(REPO)
    found = get_profile_dir("slurm")
    assert found is not None
    profile_dir, config_file = found
    assert Path(profile_dir).resolve() == PROFILE_FILE.parent
    assert Path(config_file).resolve() == PROFILE_FILE
    assert _profile()["executor"] == "slurm"


def test_profile_hard_codes_no_partition_or_account():
    settings = _profile()
    every = " ".join(settings.get("default-resources", []) + settings.get("set-resources", []))
    assert "slurm_partition" not in every and "slurm_account" not in every, every
    # the user's own settings, from the variables sbatch itself reads
    mine = _profile(SBATCH_PARTITION="gpu-long", SBATCH_ACCOUNT="proj42")
    assert "slurm_partition=gpu-long" in mine["default-resources"]
    assert "slurm_account=proj42" in mine["default-resources"]
    text = PROFILE_FILE.read_text()
    assert not re.search(r"^\s*(slurm_partition|slurm_account)\s*:\s*['\"]?\w", text, re.M)


def test_user_partition_reaches_every_job(tmp_path):
    recipe = REPO / "configs/paper/asearcher-local-7b.yaml"
    out = _dry_run(
        "--configfile", str(recipe), "--config", f"results_dir={tmp_path}",
        env=_env(SBATCH_PARTITION="gpu-long", SBATCH_ACCOUNT="proj42"),
    )  # fmt: skip
    jobs = _jobs(out)
    assert jobs
    for rule, _, res in jobs:
        assert res.get("slurm_partition") == "gpu-long" and res.get("slurm_account") == "proj42", rule
        assert " -p gpu-long" not in _sbatch(rule, res)  # the plugin adds -p/-A itself from the resources


# ---- every recipe and sweep through the profile -------------------------------------------------------------------
def _targets_of(recipe: Path) -> list[str]:
    """`all` plus the target of every sweep over this recipe."""
    sweeps = [n for n, s in SWEEPS.items() if s.sweep.base != "current" and (REPO / s.sweep.base) == recipe]
    return ["all", *(f"sweep_{n}" for n in sweeps)]


def _expected_eval_gpus(cfg, model: str) -> int:
    engine = cfg.models.get(model, cfg.engine)
    if engine.kind == "vllm":
        return engine.tensor_parallel_size
    return min(cfg.cluster.eval_gpus, 1) if engine.kind == "transformers" else 0


def _check_train_job(rule: str, res: dict, cfg) -> None:
    gpus = cfg.rl.trainer_gpus + cfg.rl.rollout_gpus
    nodes = cfg.cluster.train_nodes
    assert res["runtime"] == cfg.cluster.train_runtime_min, rule
    assert res["mem_mb"] >= 500_000 and res["cpus_per_task"] >= 32, (rule, res)
    sbatch = _sbatch(rule, res)
    assert f"-t {cfg.cluster.train_runtime_min}" in sbatch and f"--mem {res['mem_mb']}" in sbatch
    assert "--ntasks-per-gpu" not in sbatch, sbatch  # would multiply the tasks by the GPUs
    if nodes > 1:
        per_node = min(gpus, cfg.cluster.gpus_per_node)
        assert res["nodes"] == nodes and res["gres"] == f"gpu:{per_node}" and "mpi" in res, (rule, res)
        assert f"--nodes={nodes}" in sbatch and f"--ntasks={nodes}" in sbatch, sbatch
        assert f"--gres=gpu:{per_node}" in sbatch and "--gpus=" not in sbatch, sbatch
        assert f"--cpus-per-task={res['cpus_per_task']}" in sbatch
        assert _jobstep_srun(res) is None  # the batch script runs ray_on_slurm.sh, which starts the steps
    else:
        assert res["nodes"] == 1 and res["gpu"] == gpus, (rule, res)
        assert f"--gpus={gpus}" in sbatch and "--nodes=1" in sbatch, sbatch
        assert f"--gpus={gpus}" in _jobstep_srun(res)


def _check_eval_job(rule: str, res: dict, cfg, model: str) -> None:
    want = _expected_eval_gpus(cfg, model)
    assert res["runtime"] == cfg.cluster.eval_runtime_min and res["nodes"] == 1, (rule, res)
    assert res["gpu"] == want, (rule, model, res)
    sbatch = _sbatch(rule, res)
    assert "--nodes=1" in sbatch and "--ntasks-per-gpu" not in sbatch, sbatch
    assert (f"--gpus={want}" in sbatch) is (want > 0), sbatch
    if want:
        assert f"--gpus={want}" in _jobstep_srun(res)  # the step that runs the command holds them too


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_and_its_sweeps_dry_run_through_the_profile(recipe, tmp_path):
    cfg = load_config(recipe)
    targets = _targets_of(recipe)
    out = _dry_run(*targets, "--configfile", str(recipe), "--config", f"results_dir={tmp_path}")
    jobs = _jobs(out)
    rules = {rule for rule, _, _ in jobs}
    if cfg.rl.enabled:
        assert {"train", "eval"} <= rules
    sweep_runs = [n for t in targets if t.startswith("sweep_") for n in [t.removeprefix("sweep_")]]
    for name in sweep_runs:
        sweep = SWEEPS[name].sweep
        runs = [f for r, f, _ in jobs if r == "sweep_train" and f"/sweeps/{name}/" in f["output"]]
        evals = [f for r, f, _ in jobs if r == "sweep_eval" and f"/sweeps/{name}/" in f["output"]]
        assert len(runs) == len(sweep.values) and len(evals) == len(sweep.values) * len(sweep.eval), name
    for rule, fields, res in jobs:
        assert "slurm_partition" not in res and "slurm_account" not in res, rule
        sbatch = _sbatch(rule, res)
        assert " -p " not in sbatch and " -A " not in sbatch, sbatch
        if rule in ("train", "sweep_train"):
            run_cfg = cfg
            if rule == "sweep_train":  # the run's own config (a sweep may change what it needs)
                name, value = fields["wildcards"].split("sweep=")[1].split(", value=")
                loaded = SWEEPS[name]
                run_cfg = loaded.run_config(yaml.safe_load(recipe.read_text()), loaded.sweep.run(value))
            _check_train_job(rule, res, run_cfg)
        elif rule in ("eval", "eval_web"):
            _check_eval_job(rule, res, cfg, re.search(r"model=([^,]+)", fields["wildcards"]).group(1))
        elif rule == "sweep_eval":
            trained = next(
                (n for n, m in cfg.models.items() if m.model == f"{cfg.run_dir}/train/final"), None
            )
            _check_eval_job(rule, res, cfg, trained or "")
        elif rule == "build_index":
            assert res.get("gpu", 0) == cfg.cluster.index_gpus, res
        elif rule not in GPU_RULES:
            assert "gpu" not in res and "gres" not in res, (rule, res)
            assert "--gpus" not in sbatch and "--gres" not in sbatch and "--ntasks=1" in sbatch, sbatch


def test_cpu_default_asks_for_no_gpu(tmp_path):
    """The CPU default through the profile (a laptop config on a cluster): no job asks for a GPU or a node count
    beyond one."""
    jobs = _jobs(_dry_run("all", "sweep_cpu-eta", "--config", f"results_dir={tmp_path}"))
    assert {"train", "sweep_train", "eval"} <= {rule for rule, _, _ in jobs}
    for rule, _, res in jobs:
        sbatch = _sbatch(rule, res)
        assert "--gpus" not in sbatch and "--gres" not in sbatch and "mpi" not in res, (rule, sbatch)
        assert res.get("gpu", 0) == 0 and res.get("nodes", 1) == 1, (rule, res)


def test_light_rules_stay_on_the_login_node(tmp_path):
    """localrules: downloads, the merged config, sweep bookkeeping and every target rule; the stages that compute
    are submitted."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from snakemake.api import SnakemakeApi
        from snakemake.settings.types import (ConfigSettings, OutputSettings, Quietness, ResourceSettings,
                                              StorageSettings)
        with SnakemakeApi(OutputSettings(quiet={{Quietness.ALL}})) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                config_settings=ConfigSettings(
                    configfiles=[Path("configs/paper/asearcher-local-7b.yaml")],
                    config={{"results_dir": {str(tmp_path)!r}}},
                ),
                snakefile=Path("Snakefile"), workdir=Path("."),
            )
            wf.list_rules()
            w = wf._workflow
            local = sorted(r.name for r in w.rules if r.name in w._localrules or r.norun)
            print("LOCAL=" + json.dumps(local), file=sys.stderr)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, env=_env()
    )
    assert r.returncode == 0, r.stdout + r.stderr
    local = set(json.loads(r.stderr.split("LOCAL=")[1].splitlines()[0]))
    sweep_targets = {f"sweep_{n}" for n in SWEEPS}
    assert LOCAL_RULES | sweep_targets <= local, local
    assert not local & (GPU_RULES | {"retrieval_check", "synth", "sft", "tiny_model"}), local


# ---- ray_on_slurm.sh against fake srun / scontrol / ray ------------------------------------------------------------
FAKES = {
    # srun: log argv; `hostname --ip-address` answers the head's address; `ray ...` runs the fake ray
    "srun": """
        echo "srun $*" >> "$FAKE_LOG"
        while [[ $# -gt 0 && "$1" == -* ]]; do
          case "$1" in -w) shift 2 ;; *) shift ;; esac
        done
        if [[ "$1" == hostname ]]; then echo "10.1.2.3 fe80::1"; exit 0; fi
        exec "$@"
    """,
    "scontrol": """
        echo "scontrol $*" >> "$FAKE_LOG"
        if [[ "$1 $2" == "show hostnames" ]]; then printf 'gpu-a\\ngpu-b\\ngpu-c\\n'; exit 0; fi
        if [[ "$1 $2" == "show job" ]]; then
          echo "JobId=${SLURM_JOB_ID} JobName=x NumNodes=3 NumCPUs=192 NumTasks=3 CPUs/Task=64 NodeList=gpu-[a-c] TresPerNode=gres/gpu:8"
          exit 0
        fi
        exit 1
    """,
    # ray start --block: log, count this node, stay up until stopped; ray status: list the nodes that started
    "ray": """
        echo "ray $*" >> "$FAKE_LOG"
        if [[ "$1" == start ]]; then
          if [[ -n "${FAKE_RAY_DIES:-}" && " $* " != *" --head "* ]]; then exit 1; fi
          echo up >> "$FAKE_NODES"
          trap 'echo "stopped $$" >> "$FAKE_LOG"; exit 0' TERM
          while true; do sleep 0.05; done
        fi
        if [[ "$1" == status ]]; then
          [[ -n "${FAKE_RAY_NEVER_UP:-}" || ! -s "$FAKE_NODES" ]] && exit 1
          n=$(wc -l < "$FAKE_NODES")
          printf 'Node status\\n-----\\nActive:\\n'
          for i in $(seq "$n"); do echo " 1 node_$i"; done
          printf 'Idle:\\n (no idle nodes)\\nPending:\\n (no pending nodes)\\n'
          exit 0
        fi
        exit 2
    """,
}


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
        path.chmod(0o755)
    log, nodes = tmp_path / "calls.log", tmp_path / "nodes"
    log.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", FAKE_LOG=str(log), FAKE_NODES=str(nodes), RAY_POLL_S="0.1",
        RAY_START_TIMEOUT="20",
    )  # fmt: skip
    return SimpleNamespace(env=env, log=log, tmp=tmp_path)


def _run_script(fake, command: str, **env: str) -> subprocess.CompletedProcess:
    script = REPO / "workflow/scripts/ray_on_slurm.sh"
    return subprocess.run(
        ["bash", str(script), "bash", "-c", command],
        env={**fake.env, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _calls(fake) -> list[str]:
    return fake.log.read_text().splitlines()


@pytest.mark.parametrize(
    "slurm_env",
    [
        # what the SLURM plugin's job step leaves of a multi-node job's environment: the job id only
        {"SLURM_JOB_ID": "77"},
        {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "gpu-[a-c]", "SLURM_JOB_NUM_NODES": "3",
         "SLURM_GPUS_ON_NODE": "8", "SLURM_CPUS_PER_TASK": "64"},
    ],
    ids=["plugin-environment", "full-environment"],
)  # fmt: skip
def test_ray_on_slurm_starts_head_then_one_worker_per_node(fake_slurm, slurm_env):
    out = fake_slurm.tmp / "command.out"
    r = _run_script(fake_slurm, f'echo "RAY_ADDRESS=$RAY_ADDRESS" > {out}', **slurm_env)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = _calls(fake_slurm)
    starts = [c for c in calls if c.startswith("srun ") and " ray start " in c]
    assert len(starts) == 3, calls
    head, workers = starts[0], starts[1:]
    assert "--head" in head and "-w gpu-a" in head and "--port=6379" in head
    assert "--node-ip-address=10.1.2.3" in head
    assert sorted(re.search(r"-w (\S+)", w).group(1) for w in workers) == ["gpu-b", "gpu-c"]
    for call in starts:
        assert "--nodes=1 --ntasks=1" in call and "--block" in call
        assert "--cpus-per-task=64" in call and "--gres=gpu:8" in call, call
        assert "--num-gpus=8" in call and "--num-cpus=64" in call, call
    for w in workers:
        assert "--head" not in w and "--address=10.1.2.3:6379" in w
    # the head was up (polled with `ray status`) before any worker was started, all three before the command ran;
    # the head's srun runs in the background, so its own log line may come after the first poll
    first_status = next(i for i, c in enumerate(calls) if c.startswith("ray status"))
    assert calls.index(head) < calls.index(workers[0]) and first_status < calls.index(workers[0])
    assert out.read_text().strip() == "RAY_ADDRESS=10.1.2.3:6379"
    # cleanup on exit: every Ray step stopped
    deadline = time.time() + 5
    while sum(c.startswith("stopped ") for c in _calls(fake_slurm)) < 3 and time.time() < deadline:
        time.sleep(0.1)
    assert sum(c.startswith("stopped ") for c in _calls(fake_slurm)) == 3, _calls(fake_slurm)


def test_ray_on_slurm_passes_the_exit_status_and_still_cleans_up(fake_slurm):
    r = _run_script(fake_slurm, "exit 3", SLURM_JOB_ID="77")
    assert r.returncode == 3, r.stderr
    time.sleep(0.5)
    assert sum(c.startswith("stopped ") for c in _calls(fake_slurm)) == 3, _calls(fake_slurm)


def test_ray_on_slurm_fails_clearly_when_the_cluster_never_comes_up(fake_slurm):
    r = _run_script(
        fake_slurm, "touch never", SLURM_JOB_ID="77", FAKE_RAY_NEVER_UP="1", RAY_START_TIMEOUT="1"
    )
    assert r.returncode != 0
    assert "timed out" in r.stderr and "Ray head" in r.stderr
    assert not (fake_slurm.tmp / "never").exists()


def test_ray_on_slurm_fails_when_a_worker_step_dies(fake_slurm):
    r = _run_script(fake_slurm, "touch never", SLURM_JOB_ID="77", FAKE_RAY_DIES="1")
    assert r.returncode != 0 and "exited before the cluster was up" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "slurm_env",
    [{}, {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "gpu-a", "SLURM_JOB_NUM_NODES": "1"}],
    ids=["outside-slurm", "one-node"],
)
def test_ray_on_slurm_just_runs_the_command_on_one_node(fake_slurm, slurm_env):
    r = _run_script(fake_slurm, 'echo "ran ${RAY_ADDRESS:-none}"', **slurm_env)
    assert r.returncode == 0 and r.stdout.strip() == "ran none", r.stdout + r.stderr
    assert not any(c.startswith(("srun", "ray")) for c in _calls(fake_slurm))
