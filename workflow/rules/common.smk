# Helpers shared by the rule modules (config validation, paths, the merged config file).

import hashlib
import json
import os
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the asearcher package, also when not pip-installed

from asearcher.config import config_from_dict  # noqa: E402

# 1. JSON-schema validation (the schema is generated from the typed config: `asearcher config schema`).
validate(config, schema="../schemas/config.schema.json", set_default=False)
# 2. The same YAML as typed objects: an unknown key or a wrong type is an error naming the key.
CFG = config_from_dict(config, source="snakemake config")

R = CFG.results_dir
RUN = f"{R}/{CFG.name}"
RELEASES = f"{R}/releases"
CORPUS = f"{RELEASES}/ASearcher-Local-Knowledge/wiki_corpus.jsonl"
PAGES = f"{RELEASES}/ASearcher-Local-Knowledge/wiki_webpages.jsonl"
INDEX = f"{R}/index/{CFG.retrieval.backend}"
TINY = f"{R}/models/tiny"
SETTING = f"{CFG.agent.kind}-{CFG.retrieval.backend}-top{CFG.agent.topk}"


def _write_if_changed(path, text):
    p = Path(path)
    if not p.exists() or p.read_text() != text:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


# The merged, fully-defaulted config that every stage reads (rewritten only when it changes, so its mtime
# does not trigger reruns; per-rule params carry a hash of the sections each rule depends on instead).
MERGED_CONFIG = f"{RUN}/config.yaml"
_write_if_changed(MERGED_CONFIG, yaml.safe_dump(CFG.model_dump(mode="json"), sort_keys=False))


def section_hash(*names):
    """Hash of config sections: a rule reruns when (and only when) the sections it uses change."""
    blob = json.dumps({n: getattr(CFG, n).model_dump(mode="json") for n in names}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_path(name):
    """Engine model path of an evaluated model (config `models`, or the RL output for 'trained')."""
    return CFG.models[name].model


def model_inputs(wildcards):
    return local_model(model_path(wildcards.model))


def local_model(path):
    """A model this DAG produces (this run's outputs or the tiny model) is an input; a hub id or another
    run's output (e.g. the stage-1 policy of a curriculum) is not, and the stage checks it exists."""
    return [path] if path.startswith(f"{RUN}/") or path == TINY else []


LOCAL_SEARCH = CFG.tools.backend == "local"
# Stages that search the local corpus get the index, corpus and pages as inputs and the server around them.
RETRIEVAL_INPUTS = dict(index=INDEX, corpus=CORPUS, pages=PAGES) if LOCAL_SEARCH else {}


def with_retrieval(input):
    """Prefix that runs a command with the retrieval server started around it (and stopped after)."""
    if not LOCAL_SEARCH:
        return ""
    return (
        f"asearcher with-retrieval --index {input.index} --corpus {input.corpus} --pages {input.pages} "
        f"--config {MERGED_CONFIG} --"
    )


def get_final_outputs():
    outs = [f"{RUN}/retrieval_check.json"] if LOCAL_SEARCH else []
    outs += expand(
        f"{R}/eval/{{model}}/{SETTING}/{{benchmark}}/aggregate.json",
        model=list(CFG.models),
        benchmark=CFG.eval.benchmarks,
    )
    if CFG.rl.steps > 0 and any(m.model.startswith(f"{RUN}/train") for m in CFG.models.values()):
        outs.append(f"{RUN}/train/metrics.jsonl")
    return outs


def _gpu_resources(gpus_per_job, nodes, runtime):
    """SLURM resources for a GPU job; CPU-only jobs ask for nothing beyond the defaults."""
    res = {"runtime": runtime}
    if gpus_per_job > 0:
        per_node = min(gpus_per_job, CFG.cluster.gpus_per_node)
        res.update(nodes=nodes, tasks=nodes, gpu=gpus_per_job, gres=f"gpu:{per_node}")
    return res


TRAIN_RESOURCES = _gpu_resources(
    CFG.rl.trainer_gpus + CFG.rl.rollout_gpus, CFG.cluster.train_nodes, CFG.cluster.train_runtime_min
)
EVAL_RESOURCES = _gpu_resources(CFG.cluster.eval_gpus, 1, CFG.cluster.eval_runtime_min)
INDEX_RESOURCES = _gpu_resources(CFG.cluster.index_gpus, 1, 240)
