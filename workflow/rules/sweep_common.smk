# Sweep helpers for rules/sweep.smk (kept apart from the rules, as common.smk is): the sweep files loaded and
# validated at parse time, and the input, params and resource functions of the sweep rules.

import functools
import glob
import re

from asearcher.config.sweep import load_sweep, runs_json, set_options  # noqa: E402
from asearcher.utils.atomic import atomic_write_text  # noqa: E402


def _sweep_file(path):
    """A sweep file the config names: relative to the working directory, else to the repository root."""
    for candidate in (path, os.path.join(workflow.basedir, path)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ValueError(f"config sweeps: no sweep file {path!r}")


CONFIG_SWEEP_FILES = [_sweep_file(f) for f in CFG.sweeps]


def _check_train_job_shape(loaded, run, run_cfg):
    """A sweep run's training job must have the same resource keys as this run's (rule sweep_train declares
    them once): a run that needs several nodes where this one has one, or GPUs where this one has none, would be
    submitted without them."""
    keys, own = set(train_resources(run_cfg)), set(TRAIN_RESOURCES)
    if keys != own:
        raise ValueError(
            f"sweep {loaded.sweep.name!r} ({loaded.path}): run {run.dir!r} ({loaded.sweep.parameter}={run.value!r}) "
            f"needs a training job of another shape than this run's (resources {sorted(keys)} vs {sorted(own)}: "
            "several nodes vs one, or GPUs vs none). Sweep it over a base recipe whose training job has the same "
            "shape, or run that value as a recipe of its own."
        )


def _load_sweeps():
    """Every sweep file shipped in configs/sweeps/ and every file the config's `sweeps:` names, by sweep name."""
    shipped = glob.glob(os.path.join(workflow.basedir, "configs", "sweeps", "*.yaml"))
    files = sorted({os.path.abspath(f) for f in shipped} | set(CONFIG_SWEEP_FILES))
    sweeps = {}
    for f in files:
        loaded = load_sweep(f, root=workflow.basedir)
        name = loaded.sweep.name
        if name in sweeps:
            raise ValueError(f"sweep name {name!r} is used by both {sweeps[name].path} and {f}")
        if loaded.applies_to(CFG):
            # every run over this DAG's own config (overrides included)
            for run, run_cfg in zip(loaded.sweep.runs(), loaded.validate_runs(config), strict=True):
                _check_train_job_shape(loaded, run, run_cfg)
        elif f in CONFIG_SWEEP_FILES:
            raise ValueError(
                f"config sweeps: {f} varies the recipe {loaded.sweep.base} (run {loaded.base_name!r}), "
                f"not this run ({CFG.name!r})"
            )
        sweeps[name] = loaded
    return sweeps


SWEEPS = _load_sweeps()
SWEEP_RUN = f"{R}/sweeps/{{sweep}}/{{value}}"
# The name under which a sweep run's trained model is evaluated (a `models` entry set on the command line).
SWEEP_MODEL = "sweep-run"


def sweep_outputs():
    """get_final_outputs (rules/common.smk): runs.json of every sweep the config's `sweeps:` lists."""
    names = [n for n, s in SWEEPS.items() if s.path in CONFIG_SWEEP_FILES]
    return [f"{R}/sweeps/{n}/runs.json" for n in names]


def _run_of(wildcards):
    loaded = SWEEPS[wildcards.sweep]
    return loaded, loaded.sweep.run(wildcards.value)


def sweep_set_options(wildcards):
    """params: the run's `--set` options (fixed overrides, then the varied key)."""
    loaded, run = _run_of(wildcards)
    return set_options(loaded.sweep.run_overrides(run))


def sweep_wrap(wildcards, input):
    """The retrieval server around a run, with the run's overrides (a sweep over retrieval.* reaches the server)."""
    wrap = with_retrieval(wildcards, input)
    if not wrap:
        return ""
    return f"{wrap.removesuffix(' --')} {sweep_set_options(wildcards)} --"


def _trained_model_entry():
    """The engine settings a run's trained model is evaluated with: those of this run's own RL output in `models`
    (e.g. vLLM with its tensor parallelism), else the engine's."""
    for m in CFG.models.values():
        if m.model == f"{RUN}/train/final":
            return m
    return CFG.engine


def sweep_eval_set_options(wildcards, input):
    """params: the run's overrides plus a `models` entry for its trained model (the rule's `model` input)."""
    entry = _trained_model_entry().model_dump(mode="json", exclude_defaults=True)
    entry["model"] = input.model
    return f"{sweep_set_options(wildcards)} {set_options([(f'models.{SWEEP_MODEL}', entry)])}"


@functools.cache
def sweep_run_config(sweep, value):
    """A run's own config: this DAG's config with the run's overrides."""
    loaded = SWEEPS[sweep]
    return loaded.run_config(config, loaded.sweep.run(value))


def trained_eval_resources(cfg):
    return eval_resources(cfg, _trained_model_entry())


def _sweep_run_resource(table, key):
    """A resource of a sweep run's job, from the run's own config (a sweep may change GPUs, nodes or runtime)."""

    def resource(wildcards):
        value = table(sweep_run_config(wildcards.sweep, wildcards.value)).get(key)
        return value if value is not None else {"nodes": 1, "tasks": 1}.get(key, 0)

    return resource


def sweep_runs_inputs(wildcards):
    """runs.json: every run's training summary and evaluation aggregates (the files runs.json lists)."""
    out = []
    for run in runs_json(SWEEPS[wildcards.sweep], R)["runs"]:
        out.append(f"{run['train_dir']}/summary.json")
        out += run["eval"].values()
    return out


def write_sweep_runs(sweep, path, log):
    """The sweep_runs rule's body: runs.json (the report's input; contract in asearcher.config.sweep.runs_json)."""
    atomic_write_text(path, json.dumps(runs_json(SWEEPS[sweep], R), indent=2, ensure_ascii=False) + "\n")
    with open(log, "w") as f:
        f.write(f"wrote {path}: {len(SWEEPS[sweep].sweep.values)} runs\n")


def sweep_target_inputs(name, wildcards):
    """The target `sweep_<name>`: its runs.json, when this DAG runs the sweep's base recipe."""
    loaded = SWEEPS[name]
    if not loaded.applies_to(CFG):
        raise ValueError(
            f"sweep {name!r} varies the recipe {loaded.sweep.base} (run {loaded.base_name!r}), but this DAG runs "
            f"{CFG.name!r}: run `snakemake sweep_{name} --configfile {loaded.sweep.base}`"
        )
    targets = [f"{R}/sweeps/{name}/runs.json"]
    if enabled("report"):  # the sweep's figure and table (rules/report.smk)
        targets.append(f"{REPORT}/sweeps/{name}/sweep.ipynb")
    return targets
