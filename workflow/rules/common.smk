# Helpers shared by the rule modules (config validation, paths, the `enabled` switch of the optional stages, the
# merged config, the input and params functions the rules call: no lambdas inside rules).
#
# Nothing here writes a file: parsing the workflow (`snakemake -n`, `snakemake --lint`) leaves the tree as it is.
# The merged config is the output of the `merged_config` rule (rules/config.smk).

import hashlib
import json
import os
import sys

import yaml
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the asearcher package, also when not pip-installed

from asearcher.config import config_from_dict  # noqa: E402
from asearcher.config.agent import TOOL_FREE_KINDS  # noqa: E402
from asearcher.config.checks import require_consistent  # noqa: E402
from asearcher.tools.factory import setting_label  # noqa: E402

# 1. JSON-schema validation (the schema is generated from the typed config: `asearcher config schema`).
validate(config, schema="../schemas/config.schema.json", set_default=False)
# 2. The same YAML as typed objects: an unknown key or a wrong type is an error naming the key.
CFG = config_from_dict(config, source="snakemake config")
# 3. Settings that are each valid but do not fit together (caps vs contexts, GPUs vs the allocation, ...): an
#    error names the keys and stops here, before any job is submitted (`asearcher config check` runs the same).
for _warning in require_consistent(CFG, source="snakemake config"):
    print(_warning, file=sys.stderr)

R = CFG.results_dir
RUN = f"{R}/{CFG.name}"
RELEASES = f"{R}/releases"
# The three upstream releases: folder under results/releases/ -> `asearcher fetch-data --release` name.
RELEASE_NAMES = {
    "ASearcher-Local-Knowledge": "local-knowledge",
    "ASearcher-test-data": "test-data",
    "ASearcher-train-data": "train-data",
}
LOCAL_KNOWLEDGE = f"{RELEASES}/ASearcher-Local-Knowledge/manifest.json"
TEST_DATA = f"{RELEASES}/ASearcher-test-data/manifest.json"
TRAIN_DATA = f"{RELEASES}/ASearcher-train-data/manifest.json"
INDEX = f"{R}/index/{CFG.retrieval.backend}"
TINY = f"{R}/models/tiny"
SETTING = setting_label(CFG)  # names the search backend really used (web or the local index)

# Rule logs: logs/<rule>/<key>.log; Snakemake benchmark records (runtime, memory) of the heavy rules:
# logs/benchmarks/<rule>/<key>.tsv. Both relative to the working directory (git-ignored), keyed by the run name
# or the rule's wildcards. (The top-level benchmarks/ folder holds the performance scripts, not these records.)
LOGS = "logs"
BENCHMARKS = "logs/benchmarks"


# ---- optional stages ------------------------------------------------------------------------------------------
# Every optional stage switches on the `enabled` flag of its config section, read through enabled():
#   retrieval  build_index, retrieval_check, and the retrieval server around the stages that search
#              (null in the config: follows tools.backend, resolved by the typed config)
#   rl.sft     the SFT warm start (RL then starts from its output)
#   rl         the RL stage (train)
#   eval       evaluation of `models` x `eval.benchmarks`
#   synth      QA synthesis (RL trains on its output when rl.train_source says so)
#   report     the report notebooks (rules/report.smk: tables and figures under results/report/)
STAGES = ("retrieval", "rl.sft", "rl", "eval", "synth", "report")


def enabled(section):
    """Whether an optional stage is on: the `enabled` flag of config section `section` (dotted, e.g. 'rl.sft')."""
    if section not in STAGES:
        raise ValueError(f"enabled({section!r}): not an optional stage; one of {', '.join(STAGES)}")
    node = CFG
    for part in section.split("."):
        node = getattr(node, part)
    return bool(node.enabled)


# (an agent that calls no tool, e.g. direct generation, needs no retrieval server)
if CFG.tools.backend == "local" and not enabled("retrieval") and CFG.agent.kind not in TOOL_FREE_KINDS:
    raise ValueError(
        "config: retrieval.enabled is false, but tools.backend 'local' searches the local retrieval server "
        "(set retrieval.enabled to true or null, or tools.backend to 'web')"
    )

# What each switchable stage of this run produces; a model under a disabled stage's output is not evaluated.
STAGE_OUTPUTS = {"rl.sft": f"{RUN}/sft/", "rl": f"{RUN}/train/"}


def from_disabled_stage(path):
    return any(path.startswith(prefix) and not enabled(s) for s, prefix in STAGE_OUTPUTS.items())


EVAL_MODELS = [name for name, m in CFG.models.items() if not from_disabled_stage(m.model)]


# ---- the merged config ------------------------------------------------------------------------------------------
# The merged, fully-defaulted config that every stage reads, results/<run>/config.yaml, is the output of the
# `merged_config` rule in rules/config.smk. Its params carry a hash of the text, so Snakemake rewrites the file
# exactly when the config changes. Each stage takes the file as its `cfg` input and carries a `cfg_hash` param, a
# hash of only the config sections the stage depends on (STAGE_SECTIONS): a stage reruns when (and only when)
# those change, and an unchanged config reruns nothing. The `cfg` input is ancient(), so a rewritten file reruns
# no stage by its mtime, except for a stage whose sections differ from the merged config on disk (read here,
# never written). Snakemake does not weigh the params of a job whose only input from a job about to run is
# ancient (snakemake issue 4166), so such a stage sees the rewrite as an updated input and reruns in the same
# invocation.
MERGED_CONFIG = f"{RUN}/config.yaml"
MERGED_CONFIG_TEXT = yaml.safe_dump(CFG.model_dump(mode="json"), sort_keys=False)
MERGED_CONFIG_SHA256 = hashlib.sha256(MERGED_CONFIG_TEXT.encode()).hexdigest()

STAGE_SECTIONS = {
    "fetch_data": ("data",),
    "build_index": ("retrieval",),
    "retrieval_check": ("retrieval",),
    "tiny_model": ("tiny_model",),
    "sft": ("rl", "agent"),
    "train": ("rl", "agent", "engine"),
    "eval": ("eval", "agent", "retrieval"),
    "eval_web": ("eval", "agent", "retrieval", "tools"),
    "synth": ("synth", "engine", "retrieval"),
    "report_evaluation": ("report", "models", "eval", "agent", "tools"),
    "report_training": ("report", "rl", "synth"),
}


def _sections_hash(dump, names):
    """Hash of config sections of a merged config dump. The stage switches `enabled` of retrieval, rl and eval
    are left out, so turning a stage on or off reruns no other stage (rl.sft.enabled stays in: it changes what
    RL starts from)."""
    blob = {}
    for name in names:
        section = dict(dump.get(name) or {})
        if name in ("retrieval", "rl", "eval", "synth"):
            section.pop("enabled", None)
        # in_distribution*: they add and size the train-questions evaluation only (its params carry the count)
        if name == "eval":
            section.pop("in_distribution", None)
            section.pop("in_distribution_questions", None)
        blob[name] = section
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


def section_hash(*names):
    """Hash of the current config's sections `names`."""
    return _sections_hash(CFG.model_dump(mode="json"), names)


def config_hash(rule):
    """A stage's `cfg_hash` param: the hash of the sections it depends on."""
    return section_hash(*STAGE_SECTIONS[rule])


def _merged_config_on_disk():
    try:
        with open(MERGED_CONFIG) as f:
            dump = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return dump if isinstance(dump, dict) else None


_ON_DISK = _merged_config_on_disk()


def config_input(rule):
    """A stage's `cfg` input: the merged config, ancient() unless the stage's sections differ from those of the
    merged config on disk (see above)."""
    names = STAGE_SECTIONS[rule]
    if _ON_DISK is not None and _sections_hash(_ON_DISK, names) != section_hash(*names):
        return MERGED_CONFIG
    return ancient(MERGED_CONFIG)


def write_merged_config(path, log):
    """The merged_config rule's body: write the merged config (atomically) and say so in the log."""
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(tmp, "w") as f:
        f.write(MERGED_CONFIG_TEXT)
    os.replace(tmp, path)
    with open(log, "w") as f:
        f.write(f"wrote {path} (sha256 {MERGED_CONFIG_SHA256})\n")


# ---- models -----------------------------------------------------------------------------------------------------
def local_model(path):
    """A model this DAG produces (this run's outputs or the tiny model) is an input; a hub id or another
    run's output (e.g. the stage-1 policy of a curriculum) is not, and the stage checks it exists."""
    return [path] if path.startswith(f"{RUN}/") or path == TINY else []


BASE_MODEL = CFG.engine.model
RL_INIT = f"{RUN}/sft/model" if enabled("rl.sft") else BASE_MODEL
# CPU smoke: RL on the questions the SFT oracle could answer from the small corpus (see rl.sft.rl_on_answerable).
RL_ON_ANSWERABLE = enabled("rl.sft") and CFG.rl.sft.rl_on_answerable


def eval_model_input(wildcards):
    """eval: the evaluated model when this DAG produces it (config `models`, or the RL output for 'trained')."""
    return local_model(CFG.models[wildcards.model].model)


def sft_base_model(wildcards, input):
    """sft --model: the base model (its `model` input when this DAG produces it, else the engine's model id)."""
    return input.model[0] if input.model else BASE_MODEL


def rl_init_model(wildcards, input):
    """train --model: the SFT output when the warm start is on, else the base model."""
    return input.model[0] if input.model else RL_INIT


# ---- data -------------------------------------------------------------------------------------------------------
# Stages that search the local corpus get the index and the Local-Knowledge release as inputs and the retrieval
# server around them.
RETRIEVAL_INPUTS = dict(index=INDEX, knowledge=LOCAL_KNOWLEDGE) if enabled("retrieval") else {}


def fetch_release_name(wildcards):
    return RELEASE_NAMES[wildcards.release]


def fetch_output_dir(wildcards, output):
    """fetch-data --output: the parent of the release folders."""
    return os.path.dirname(os.path.dirname(output.manifest))


def releases_dir(wildcards, input):
    """eval --releases: the parent of the release folders, from the test-data manifest."""
    return os.path.dirname(os.path.dirname(input.test))


def _release_file(manifest, name):
    return os.path.join(os.path.dirname(manifest), name)


def corpus_file(wildcards, input):
    """The corpus of the Local-Knowledge release (the `knowledge` input is its manifest, written last)."""
    return _release_file(input.knowledge, "wiki_corpus.jsonl")


def sft_train_file(wildcards, input):
    """sft --train: rl.train_file of the train-data release."""
    return _release_file(input.train, CFG.rl.train_file)


def rl_train_file(wildcards, input):
    """train --train: per rl.train_source, the released questions (the SFT output's answerable ones in the CPU
    smoke, rl.sft.rl_on_answerable; else rl.train_file of the train-data release), the synth stage's, or both.
    """
    files = []
    if CFG.rl.train_source in ("released", "both"):
        if RL_ON_ANSWERABLE:
            files.append(os.path.join(input.model[0], "answerable.jsonl"))
        else:
            files.append(_release_file(input.train, CFG.rl.train_file))
    if CFG.rl.train_source in ("synthesized", "both"):
        files.append(input.synth[0])
    return files


def synth_train_input(wildcards):
    """train: the synthesized training file, when RL trains on it."""
    return [f"{RUN}/synth/train.jsonl"] if CFG.rl.train_source != "released" else []


# ---- synthesis --------------------------------------------------------------------------------------------------
# The models of both roles (null: the reasoner is the `engine`, the instruct model is the reasoner).
SYNTH_REASONER = CFG.synth.reasoner or CFG.engine
SYNTH_MODELS = sorted({SYNTH_REASONER.model, (CFG.synth.instruct or SYNTH_REASONER).model})
# QA seeds without statements take them from the retrieval server (page seeds need no server).
SYNTH_SEARCHES = CFG.synth.seeds != "pages" and enabled("retrieval")


def synth_model_input():
    return [p for m in SYNTH_MODELS for p in local_model(m)]


def synth_retrieval_inputs():
    """synth: the index when the stage searches (`knowledge` is an input of the rule either way)."""
    return dict(index=INDEX) if SYNTH_SEARCHES else {}


def synth_wrap(wildcards, input):
    return with_retrieval(wildcards, input) if SYNTH_SEARCHES else ""


def pages_file(wildcards, input):
    """The pages of the Local-Knowledge release."""
    return _release_file(input.knowledge, "wiki_webpages.jsonl")


def train_release_dir(wildcards, input):
    return os.path.dirname(input.train)


def output_dir(wildcards, output):
    """The directory of a stage's first output (`--output` of eval and train)."""
    return os.path.dirname(output[0])


def with_retrieval(wildcards, input):
    """params function: the prefix that runs a command with the retrieval server started around it (and
    stopped after), or nothing when the retrieval stage is off."""
    if not enabled("retrieval"):
        return ""
    return (
        f"asearcher --no-progress with-retrieval --index {input.index} "
        f"--corpus {_release_file(input.knowledge, 'wiki_corpus.jsonl')} "
        f"--pages {_release_file(input.knowledge, 'wiki_webpages.jsonl')} --config {input.cfg} --"
    )


# ---- the web setting on the local web ---------------------------------------------------------------------------
# A CPU-scale run that searches the local index (tools.backend local, the transformers engine: the CPU default) also
# evaluates its first model on its first benchmark in the web setting, against the local web of its own retrieval
# server: the real web tools (Serper-format search at the server's /search, direct page reads of its /wiki/ pages
# through the URL guard, which lets only the server's host:port through), recording every tool response into the
# evaluation's output (tool-recordings/). A few questions, one sample each: it runs the web path end to end, it
# measures nothing. The result path names the setting: <agent.kind>-localweb-top<topk>.
LOCAL_WEB_EVAL = (
    enabled("eval")
    and enabled("retrieval")
    and CFG.tools.backend == "local"
    and CFG.engine.kind == "transformers"
    and bool(EVAL_MODELS)
    and bool(CFG.eval.benchmarks)
)
LOCAL_WEB_SETTING = f"{CFG.agent.kind}-localweb-top{CFG.agent.topk}"
LOCAL_WEB_QUESTIONS = 4
LOCAL_WEB_OVERRIDES = " ".join(
    f"--set {o}"
    for o in (
        "tools.backend=web",
        "tools.web.search_url=local",
        "tools.web.reader=direct",
        "tools.web.record=record",
        "agent.allow_access=true",  # the web setting browses: page reads go through the guard
        "eval.k=1",
    )
)


def local_web_targets():
    """eval_web's output: one model (the first evaluated), one benchmark (the first), when LOCAL_WEB_EVAL."""
    if not LOCAL_WEB_EVAL:
        return []
    return [f"{R}/eval/{EVAL_MODELS[0]}/{LOCAL_WEB_SETTING}/{CFG.eval.benchmarks[0]}/aggregate.json"]


# ---- in-distribution evaluation (eval.in_distribution; rules/eval.smk) ------------------------------------------
# Every evaluated model also on the questions RL trained on: the benchmark train-questions, read from the file RL
# trains on (the first eval.in_distribution_questions of it), with the agent as trained.
TRAIN_QUESTIONS = "train-questions"
IN_DISTRIBUTION_EVAL = enabled("eval") and enabled("rl") and CFG.eval.in_distribution and bool(EVAL_MODELS)
# What RL trains on (the first file of rl_train_file): the synthesized questions when it trains on those only, the
# SFT output (its answerable.jsonl) with rl.sft.rl_on_answerable, else rl.train_file of the train-data release.
if CFG.rl.train_source == "synthesized":
    TRAIN_QUESTIONS_SOURCE = f"{RUN}/synth/train.jsonl"
elif RL_ON_ANSWERABLE:
    TRAIN_QUESTIONS_SOURCE = f"{RUN}/sft/model"
else:
    TRAIN_QUESTIONS_SOURCE = TRAIN_DATA


def train_questions_file(source):
    """The questions file inside a TRAIN_QUESTIONS_SOURCE (a directory or a release manifest) or the file itself."""
    if source == f"{RUN}/sft/model":
        return os.path.join(source, "answerable.jsonl")
    if source == TRAIN_DATA:
        return _release_file(source, CFG.rl.train_file)
    return source


def in_distribution_targets():
    """get_final_outputs: train-questions x every evaluated model, when IN_DISTRIBUTION_EVAL."""
    if not IN_DISTRIBUTION_EVAL:
        return []
    return expand(f"{R}/eval/{{model}}/{SETTING}/{TRAIN_QUESTIONS}/aggregate.json", model=EVAL_MODELS)


def eval_questions_input(wildcards):
    """eval: the file RL trains on for train-questions; nothing for the paper's benchmarks (test data)."""
    return [TRAIN_QUESTIONS_SOURCE] if wildcards.benchmark == TRAIN_QUESTIONS else []


def eval_questions_args(wildcards, input):
    """eval: for train-questions, --questions FILE, the question count and the agent as trained; nothing for the
    paper's benchmarks."""
    if wildcards.benchmark != TRAIN_QUESTIONS:
        return ""
    questions = train_questions_file(input.questions[0])
    return (
        f"--questions {questions} --max-samples {CFG.eval.in_distribution_questions} "
        "--set eval.agent.defaults=agent"
    )


# ---- targets ----------------------------------------------------------------------------------------------------
def get_final_outputs():
    """The targets of the `all` rule (the product of every enabled stage)."""
    outs = [MERGED_CONFIG]
    if enabled("retrieval"):
        outs.append(f"{RUN}/retrieval_check.json")
    if enabled("rl.sft"):
        outs.append(f"{RUN}/sft/model")
    if enabled("synth"):
        outs += [f"{RUN}/synth/train.jsonl", f"{RUN}/synth/stats.json"]
    if enabled("rl"):
        outs.append(f"{RUN}/train/metrics.jsonl")
    if enabled("eval"):
        outs += expand(
            f"{R}/eval/{{model}}/{SETTING}/{{benchmark}}/aggregate.json",
            model=EVAL_MODELS,
            benchmark=CFG.eval.benchmarks,
        )
        outs += local_web_targets()
        outs += in_distribution_targets()  # train-questions, with eval.in_distribution
    outs += sweep_outputs()  # rules/sweep.smk: runs.json of the sweeps the config's `sweeps:` lists
    if enabled("report"):  # last: the report reads the targets above (rules/report.smk)
        outs += report_targets(outs)
    return outs


# ---- cluster resources ------------------------------------------------------------------------------------------
# What a job asks SLURM for, in the resources snakemake-executor-plugin-slurm reads (slurm/profile.v9+.yaml adds
# memory and CPUs per rule; partition and account are the user's own settings). Each is a function of a config, so
# that a sweep run (rules/sweep.smk) asks for what its own config needs.
def _gpu_resources(gpus_per_job, runtime):
    """SLURM resources for a one-node job: `gpu` (sbatch --gpus=N; the plugin's job step that runs the command gets
    them too); CPU-only jobs ask for nothing beyond the defaults."""
    res = {"runtime": runtime}
    if gpus_per_job > 0:
        res.update(nodes=1, gpu=gpus_per_job)
    return res


def train_resources(cfg):
    """The training job: the trainer's and the rollout engines' GPUs across cluster.train_nodes nodes.

    Several nodes: `gres` per node and one task per node, with `mpi` set so that the plugin runs the command in the
    batch script itself rather than inside one single-task step: ray_on_slurm.sh then starts a Ray worker on every
    node with srun. `tasks_per_gpu: 0` keeps the plugin from turning the task count into --ntasks-per-gpu.
    """
    gpus = cfg.rl.trainer_gpus + cfg.rl.rollout_gpus
    cluster = cfg.cluster
    if gpus <= 0 or cluster.train_nodes <= 1:
        return _gpu_resources(gpus, cluster.train_runtime_min)
    return {
        "runtime": cluster.train_runtime_min,
        "nodes": cluster.train_nodes,
        "tasks": cluster.train_nodes,
        "tasks_per_gpu": 0,
        "mpi": "srun",
        "gres": f"gpu:{min(gpus, cluster.gpus_per_node)}",
    }


def model_eval_gpus(cfg, engine):
    """GPUs of an evaluation job, by the evaluated model's engine: a vLLM engine's tensor parallelism, one device
    for an in-process transformers model when cluster.eval_gpus allows GPUs, none for an OpenAI-compatible endpoint.
    """
    if engine.kind == "vllm":
        return engine.tensor_parallel_size
    if engine.kind == "transformers":
        return min(cfg.cluster.eval_gpus, 1)
    return 0


def eval_resources(cfg, engine):
    """An evaluation job of `engine`'s model: one node (the same keys for every model, so one rule serves all)."""
    res = {"nodes": 1, "gpu": 0}
    res.update(_gpu_resources(model_eval_gpus(cfg, engine), cfg.cluster.eval_runtime_min))
    return res


EVAL_RESOURCE_KEYS = ("runtime", "nodes", "gpu")


def _eval_resource(key):
    def resource(wildcards):
        return eval_resources(CFG, CFG.models.get(wildcards.model, CFG.engine))[key]

    return resource


TRAIN_RESOURCES = train_resources(CFG)
# sized per model (the rules' wildcard `model`)
EVAL_RESOURCES = {key: _eval_resource(key) for key in EVAL_RESOURCE_KEYS}
INDEX_RESOURCES = _gpu_resources(CFG.cluster.index_gpus, 240)
# synth calls served models (OpenAI-compatible endpoints) at paper scale, or the CPU engine: no GPU of its own.
SYNTH_RESOURCES = _gpu_resources(0, CFG.cluster.synth_runtime_min)
