"""Consistency checks across config sections: what a schema cannot see, but a cluster's first day would.

Each check is a function `cfg -> list[Problem]` registered with @check; `check_config(cfg)` runs them all. A
problem names the keys involved, so the error reads like "rl.max_tokens_per_mb (8192) < agent.max_context ...".
Run by `asearcher config check --config FILE`, by the Snakefile at start-up and by `asearcher train` / `eval`
before anything starts (errors stop the run; warnings are printed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from asearcher.errors import UserFacingError

if TYPE_CHECKING:
    from asearcher.config import Config


@dataclass(frozen=True)
class Problem:
    keys: tuple[str, ...]
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.level}: {', '.join(self.keys)}: {self.message}"


class ConfigCheckError(UserFacingError, ValueError):
    def __init__(self, problems: list[Problem], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} inconsistent setting(s):\n{lines}")


CheckFn = Callable[["Config"], list[Problem]]
CHECKS: list[CheckFn] = []


def check(fn: CheckFn) -> CheckFn:
    CHECKS.append(fn)
    return fn


def check_config(cfg: Config) -> list[Problem]:
    """Every problem of every registered check, errors first."""
    problems = [p for fn in CHECKS for p in fn(cfg)]
    return sorted(problems, key=lambda p: p.level != "error")


def require_consistent(cfg: Config, source: str = "config") -> list[Problem]:
    """Raise ConfigCheckError on any error; return the warnings."""
    problems = check_config(cfg)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise ConfigCheckError(errors, source)
    return problems


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---- the checks ----------------------------------------------------------------------------------------------------


@check
def backends_are_installed(cfg: Config) -> list[Problem]:
    """A backend that needs an optional extra fails on the cluster's first job, not at submission: say it now."""
    out = []
    uses_vllm = cfg.engine.kind == "vllm" or any(m.kind == "vllm" for m in cfg.models.values())
    if uses_vllm and not _installed("vllm"):
        out.append(
            Problem(
                ("engine.kind",),
                "'vllm' needs the gpu extra (pip install -e '.[gpu]'); vllm is not installed here",
                "warning",
            )
        )
    if cfg.rl.enabled and cfg.rl.backend == "deepspeed" and not _installed("deepspeed"):
        out.append(
            Problem(("rl.backend",), "'deepspeed' needs the gpu extra; deepspeed is not installed here")
        )
    return out


@check
def training_cap_covers_the_context(cfg: Config) -> list[Problem]:
    """Every LLM call of a trajectory must fit the trainer's sequence cap, or its tokens leave the loss."""
    rl, agent = cfg.rl, cfg.agent
    if not rl.enabled:
        return []
    key, cap = (
        ("rl.pack_max_tokens", rl.pack_max_tokens)
        if rl.pack_max_tokens
        else ("rl.max_tokens_per_mb", rl.max_tokens_per_mb)
    )
    if cap < agent.max_context_tokens:
        return [
            Problem(
                (key, "agent.max_context_tokens"),
                f"the training cap ({cap} tokens) is below the agent's context ({agent.max_context_tokens}): every "
                "LLM call longer than the cap would be cut or dropped from the loss; set "
                f"{key} >= {agent.max_context_tokens} (upstream: both 8000 on 1 node, 28000 on 16)",
            )
        ]
    return []


@check
def batches_and_groups(cfg: Config) -> list[Problem]:
    out = []
    rl = cfg.rl
    if not rl.enabled:
        return out
    if rl.max_concurrent_rollouts < rl.group_size:
        out.append(
            Problem(
                ("rl.max_concurrent_rollouts", "rl.group_size"),
                f"{rl.max_concurrent_rollouts} trajectories in flight cannot hold one group of {rl.group_size}",
            )
        )
    if rl.dynamic_filtering and rl.group_size < 2:
        out.append(
            Problem(
                ("rl.dynamic_filtering", "rl.group_size"),
                "dynamic filtering drops groups whose rewards are all equal: a group of 1 is always dropped",
            )
        )
    return out


@check
def gpus_fit_the_allocation(cfg: Config) -> list[Problem]:
    """Every GPU a training run reserves in Ray (trainer ranks + each rollout worker's engine GPUs, one owner each:
    asearcher.utils.placement) must exist in its allocation, or Ray waits forever for the missing ones."""
    from asearcher.utils.placement import max_engines_per_node, plan_gpus

    rl, engine, cluster = cfg.rl, cfg.engine, cfg.cluster
    if not rl.enabled:
        return []
    out = []
    plan = plan_gpus(rl, engine)
    tp, workers = engine.tensor_parallel_size, rl.rollout_workers
    if engine.kind == "vllm" and rl.rollout_gpus != workers * tp:
        out.append(
            Problem(
                ("rl.rollout_gpus", "rl.rollout_workers", "engine.tensor_parallel_size"),
                f"rl.rollout_gpus={rl.rollout_gpus} but each of the rl.rollout_workers={workers} workers owns exactly "
                f"its vLLM engine's engine.tensor_parallel_size={tp} GPUs: {workers * tp} in all; set rl.rollout_gpus "
                f"to {workers * tp} (the allocation is sized from it) or change the workers / tensor parallel size",
            )
        )
    if engine.kind == "transformers" and rl.rollout_gpus > workers:
        out.append(
            Problem(
                ("rl.rollout_gpus", "rl.rollout_workers", "engine.kind"),
                f"the transformers engine computes on one GPU: {workers} workers use {workers} of the "
                f"rl.rollout_gpus={rl.rollout_gpus}",
                "warning",
            )
        )
    if engine.kind == "openai" and rl.rollout_gpus > 0:
        out.append(
            Problem(
                ("rl.rollout_gpus", "engine.kind"),
                f"engine.kind=openai serves the model elsewhere: the rl.rollout_gpus={rl.rollout_gpus} GPUs are "
                "not used",
                "warning",
            )
        )
    if plan.trainer_backend == "torch" and rl.trainer_gpus > 0:
        out.append(
            Problem(
                ("rl.backend", "rl.trainer_gpus"),
                "the torch trainer runs in the driver process on one GPU that Ray does not reserve"
                + (
                    ", so Ray may give the same GPU to a rollout worker: use rl.backend: deepspeed (ranks reserve "
                    "their GPUs in Ray) for a GPU trainer next to GPU rollouts"
                    if plan.rollout_gpus
                    else ""
                )
                + (f"; rl.trainer_gpus={rl.trainer_gpus} but it uses one" if rl.trainer_gpus > 1 else ""),
                "warning",
            )
        )
    gpn, nodes = cluster.gpus_per_node, cluster.train_nodes
    alloc = nodes * gpn
    where = f"cluster.train_nodes={nodes} x cluster.gpus_per_node={gpn} = {alloc}"
    if plan.worker_gpus > gpn:
        out.append(
            Problem(
                ("engine.tensor_parallel_size", "cluster.gpus_per_node"),
                f"an engine's {plan.worker_gpus:g} GPUs must be on one node, but nodes have cluster.gpus_per_node={gpn}",
            )
        )
    elif plan.worker_gpus and workers > nodes * max_engines_per_node(plan.worker_gpus, gpn):
        fit = max_engines_per_node(plan.worker_gpus, gpn)
        out.append(
            Problem(
                (
                    "rl.rollout_workers",
                    "engine.tensor_parallel_size",
                    "cluster.train_nodes",
                    "cluster.gpus_per_node",
                ),
                f"{fit} engines of {plan.worker_gpus:g} GPUs fit a node of {gpn}: {nodes} nodes hold {nodes * fit}, "
                f"not rl.rollout_workers={workers}",
            )
        )
    if plan.total_gpus > alloc:
        out.append(
            Problem(
                (
                    "rl.trainer_gpus",
                    "rl.rollout_workers",
                    "engine.tensor_parallel_size",
                    "cluster.train_nodes",
                    "cluster.gpus_per_node",
                ),
                f"the run needs {plan.describe()}; the allocation has {where}: Ray would wait forever for the "
                f"missing {plan.total_gpus - alloc:g}. Raise cluster.train_nodes, or lower rl.trainer_gpus or "
                "rl.rollout_workers",
            )
        )
    elif 0 < plan.total_gpus < alloc:
        out.append(
            Problem(
                ("rl.trainer_gpus", "rl.rollout_workers", "cluster.train_nodes", "cluster.gpus_per_node"),
                f"the run uses {plan.describe()}; the allocation has {where}: {alloc - plan.total_gpus:g} GPUs idle",
                "warning",
            )
        )
    return out


@check
def weight_sync_reaches_the_engines(cfg: Config) -> list[Problem]:
    """An in-memory broadcast needs engines that join the trainer's weight group, and NCCL needs GPUs at both ends."""
    rl, out = cfg.rl, []
    if not rl.enabled or rl.weight_sync not in ("broadcast", "nccl"):
        return out
    if cfg.engine.kind == "openai":
        out.append(
            Problem(
                ("rl.weight_sync", "engine.kind"),
                f"rl.weight_sync={rl.weight_sync} sends weights to engines that join the trainer's weight group; an "
                "openai engine serves its weights elsewhere and cannot (use a transformers or vllm engine)",
            )
        )
    if rl.weight_sync == "nccl" and (rl.trainer_gpus == 0 or rl.rollout_gpus == 0):
        out.append(
            Problem(
                ("rl.weight_sync", "rl.trainer_gpus", "rl.rollout_gpus"),
                f"'nccl' moves weights between GPUs, but the trainer has rl.trainer_gpus={rl.trainer_gpus} and the "
                f"engines rl.rollout_gpus={rl.rollout_gpus}: use 'broadcast' (gloo when either side is on the CPU)",
            )
        )
    return out


@check
def synthesized_training_data_is_produced(cfg: Config) -> list[Problem]:
    """Training on synthesized questions needs the synth stage that writes them."""
    if cfg.rl.enabled and cfg.rl.train_source != "released" and not cfg.synth.enabled:
        return [
            Problem(
                ("rl.train_source", "synth.enabled"),
                f"rl.train_source is {cfg.rl.train_source!r}, but synth.enabled is false: nothing would write the "
                "synthesized training file (enable synth, or train on 'released')",
            )
        ]
    return []


@check
def synthesis_has_a_link_graph(cfg: Config) -> list[Problem]:
    """At full scale, deriving links from 26 GB of page text is not possible: the release's link file is needed."""
    uses_links = cfg.synth.enabled and cfg.synth.max_turns > 1
    if (
        uses_links
        and cfg.synth.links_file is None
        and not cfg.data.include_wikilinks
        and cfg.data.pages_limit is None
    ):
        return [
            Problem(
                ("synth.links_file", "data.include_wikilinks"),
                "synth walks page links, but neither the release's wikilinks.jsonl (data.include_wikilinks: true) "
                "nor synth.links_file is given: links would be derived from the page text, which needs the whole "
                "pages file in memory (retrieval.memory_store_max_mb)",
                "warning",
            )
        ]
    return []


@check
def web_tools_are_consistent(cfg: Config) -> list[Problem]:
    """The web tools' settings that only make sense together (tools.web); nothing to check for local tools."""
    tools, out = cfg.tools, []
    if tools.backend != "web":
        return out
    web = tools.web
    if web.search_url == "local" and cfg.retrieval.enabled is False:
        out.append(
            Problem(
                ("tools.web.search_url", "retrieval.enabled"),
                "search_url 'local' searches the retrieval server's local web, but retrieval.enabled is false: "
                "nothing would start the server (set retrieval.enabled: true, or leave it null)",
            )
        )
    if web.record == "off" and web.record_dir is not None:
        out.append(
            Problem(
                ("tools.web.record", "tools.web.record_dir"),
                f"record_dir {web.record_dir!r} is ignored while record is 'off' (set record: record / cache / "
                "replay to use it)",
                "warning",
            )
        )
    if web.record == "replay" and web.record_dir is None:
        out.append(
            Problem(
                ("tools.web.record", "tools.web.record_dir"),
                "record 'replay' answers from a recording: set record_dir to the folder a recording run wrote "
                "(an evaluation without record_dir replays the recording next to its results)",
                "warning",
            )
        )
    if web.reader == "jina" and web.search_url == "local":
        out.append(
            Problem(
                ("tools.web.search_url", "tools.web.reader"),
                "the local web's pages are on this machine: a reader service cannot fetch them (use reader: direct)",
                "warning",
            )
        )
    if web.reader == "jina" and "://r.jina.ai" in web.reader_url and web.allow:
        out.append(
            Problem(
                ("tools.web.reader", "tools.web.allow"),
                "the allowlist only applies to direct page fetches and the local web: the Jina reader fetches "
                "pages from its own network and cannot reach allowlisted local hosts",
                "warning",
            )
        )
    return out
