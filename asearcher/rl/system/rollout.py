"""Rollout workers: Ray async actors that each host an inference engine, an agent and a tool backend.

A worker runs many questions at once (each a group of `group_size` trajectories run concurrently), scores
every trajectory and returns an `rl.types.Group`. `update_weights` may arrive while groups are in flight:
the engine swaps weights between decoding steps and the running trajectories carry on under the new policy,
each token recording the version that produced it.

What a worker hosts comes from a picklable *factory* (`build(worker_index) -> RolloutComponents`), so the
same worker runs the real stack (`DefaultRolloutFactory`: make_engine + make_agent + LocalTools on the
retrieval server, or WebTools for tools.backend: web) or test/benchmark doubles.

GPUs: a worker owns its engine's GPUs (asearcher.utils.placement). It reserves them in Ray (bundle `worker_index`
of the run's rollout placement group, `reserve_rollout_gpus`), and the engine it builds runs in the worker's own
process on exactly those GPUs (vLLM: in-process, tensor parallel workers as child processes), so nothing reserves
them a second time. A worker without GPUs sees none.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Awaitable, Callable

import ray

from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import SamplingParams
from asearcher.rl.algo.types import Group, ScoredTrajectory
from asearcher.utils.placement import GpuPlan, Reservation, actor_options, held_gpu_ids
from asearcher.utils.secrets import install_log_redaction

# async: a judge reward awaits an LLM call on the worker's event loop
ScoreFn = Callable[[Trajectory, dict[str, Any]], Awaitable[tuple[float, dict[str, Any]]]]


def traj_seed(base_seed: int, index: int, sample_idx: int) -> int:
    """Seed of one trajectory from (run seed, question draw number, sample index): worker-independent."""
    h = hashlib.sha256(f"{base_seed}:{index}:{sample_idx}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class RolloutComponents:
    engine: Any  # asearcher.llm.engine.InferenceEngine
    agent: Any  # asearcher.agent.base.Agent
    tools: Any  # asearcher.tools.base.ToolBackend
    score: ScoreFn  # async (trajectory, question dict) -> (reward, info)
    max_new_tokens: int = 1024
    judge: Any = None  # asearcher.eval.judge.Judge when the reward is judged (closed with the worker)


class DefaultRolloutFactory:
    """The real stack: the configured engine, the configured agent, local retrieval tools, paper rewards.
    With rl.reward=judge each worker builds its own LLM judge from `judge_cfg` (the eval.judge section)."""

    def __init__(
        self,
        engine_cfg: Any,
        agent_cfg: Any,
        rl_cfg: Any,
        retrieval_url: str | None,
        judge_cfg: Any = None,
        tools_cfg: Any = None,
        record_dir: str | None = None,
    ):
        self.engine_cfg = engine_cfg
        self.agent_cfg = agent_cfg
        self.rl_cfg = rl_cfg
        self.retrieval_url = retrieval_url
        self.judge_cfg = judge_cfg
        self.tools_cfg = tools_cfg  # the `tools` section; None or backend 'local': LocalTools
        self.record_dir = (
            record_dir  # web recordings (a sub-folder per worker) when tools.web.record_dir is null
        )

    def make_engine(self) -> Any:
        from asearcher.llm.factory import make_engine  # heavy imports stay inside the worker process

        return make_engine(self.engine_cfg)

    def make_judge(self) -> Any:
        from asearcher.eval.judge import make_judge

        if self.judge_cfg is None:
            raise ValueError("rl.reward is 'judge' but no judge settings were given (the eval.judge section)")
        return make_judge(self.judge_cfg)

    def build(self, worker_index: int) -> RolloutComponents:
        from asearcher.agent import make_agent
        from asearcher.rl.algo.rewards import ascore_trajectory
        from asearcher.tools.local import LocalTools

        engine = self.make_engine()
        agent = make_agent(self.agent_cfg, engine.tokenizer)
        if self.tools_cfg is not None and self.tools_cfg.backend == "web":
            from asearcher.tools.web import make_web_tools

            # one recording folder per worker: processes never append to the same file
            web = self.tools_cfg.web
            base = web.record_dir or self.record_dir
            tools_cfg = self.tools_cfg.model_copy(update={"web": web.model_copy(update={"record_dir": None})})
            rec = None if base is None else f"{base}/worker{worker_index}"
            tools = make_web_tools(tools_cfg, record_dir=rec, retrieval_url=self.retrieval_url)
        else:
            # no URL: discovered from $ASEARCHER_RETRIEVAL_URL / $RAG_SERVER_ADDR_DIR in the worker's environment
            tools = LocalTools(base_url=self.retrieval_url) if self.retrieval_url else LocalTools()
        rl_cfg = self.rl_cfg
        judge = self.make_judge() if rl_cfg.reward == "judge" else None

        async def score(traj: Trajectory, q: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            return await ascore_trajectory(
                traj, q["answers"], q.get("aug_answers") or [], rl_cfg, judge=judge
            )

        return RolloutComponents(
            engine, agent, tools, score, max_new_tokens=self.agent_cfg.max_new_tokens, judge=judge
        )


class RolloutWorkerImpl:
    """The worker logic (plain class, so it can run in-process too); `RolloutWorker` is its Ray actor."""

    def __init__(self, factory: Any, worker_index: int, group_size: int, temperature: float, base_seed: int):
        # a Ray worker process does not run cli.main: its log records (engine retries, failed trajectories) are
        # redacted from here on, like the driver's
        install_log_redaction()
        self.worker_index = worker_index
        self.group_size = group_size
        self.temperature = temperature
        self.base_seed = base_seed
        self.c: RolloutComponents = factory.build(worker_index)
        self.in_flight = 0
        self.groups_done = 0

    def ping(self) -> dict[str, Any]:
        return {
            "worker": self.worker_index,
            "pid": os.getpid(),
            "version": self.c.engine.version,
            "in_flight": self.in_flight,
            # GPU ownership, for logs and the placement test: the GPUs Ray gave this worker and where its engine runs
            "gpus": held_gpu_ids(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "engine_placement": getattr(self.c.engine, "placement", "in_process"),
        }

    async def update_weights(self, weights: Any, version: int) -> int:
        """weights: a state dict, an HF dir, or a BroadcastUpdate (rl.weight_sync: broadcast), see WeightSync."""
        from asearcher.rl.system.weight_sync import StoredWeights

        if isinstance(weights, StoredWeights):  # object store: views of the shared bytes, no copy
            weights = weights.tensors()
        await self.c.engine.update_weights(weights, version)
        return self.c.engine.version

    def weight_receiver(self) -> dict[str, Any] | None:
        """How the engine joins a weight broadcast (ranks, dtype, device), None when it cannot."""
        get = getattr(self.c.engine, "weight_receiver", None)
        return get() if get is not None else None

    def weights_digest(self) -> str | None:
        """sha256 of the engine's loaded weights (checks that every worker holds the trainer's bits)."""
        get = getattr(self.c.engine, "weights_digest", None)
        return get() if get is not None else None

    async def _run_one(self, q: dict[str, Any], k: int) -> ScoredTrajectory:
        seed = traj_seed(self.base_seed, q["index"], k)
        sampling = SamplingParams(
            max_new_tokens=self.c.max_new_tokens, temperature=self.temperature, seed=seed
        )
        traj = await self.c.agent.run(
            qid=q["qid"],
            question=q["question"],
            answers=q["answers"],
            engine=self.c.engine,
            tools=self.c.tools,
            sampling=sampling,
            sample_idx=k,
            rng=random.Random(seed),
        )
        traj.seed = seed
        traj.meta["index"] = q["index"]
        reward, info = await self.c.score(traj, q)
        return ScoredTrajectory(traj, float(reward), dict(info))

    async def run_group(self, q: dict[str, Any], submit_version: int) -> Group:
        self.in_flight += 1
        t0 = time.time()
        try:
            samples = await asyncio.gather(*(self._run_one(q, k) for k in range(self.group_size)))
        finally:
            self.in_flight -= 1
        self.groups_done += 1
        return Group(
            qid=q["qid"],
            question=q["question"],
            answers=list(q["answers"]),
            samples=list(samples),
            submit_version=submit_version,
            meta={"index": q["index"], "worker": self.worker_index, "t_start": t0, "t_end": time.time()},
        )

    async def aclose(self) -> None:
        for obj in (self.c.tools, self.c.engine, self.c.judge):
            close = getattr(obj, "aclose", None)
            if close is not None:
                await close()


@ray.remote(max_restarts=0)
class RolloutWorker(RolloutWorkerImpl):
    """Ray async actor: many `run_group` calls run concurrently on the actor's event loop."""


def reserve_rollout_gpus(plan: GpuPlan, *, timeout_s: float | None = None) -> Reservation | None:
    """Reserve every rollout worker's GPUs at once (one bundle of plan.worker_gpus per worker; None without GPUs).

    Made before the trainer's reservation: engines of tensor_parallel_size GPUs need that many free on one node,
    the trainer's 1-GPU bundles then fit whatever is left."""
    bundles = plan.rollout_bundles()
    if not bundles:
        return None
    return Reservation.create(
        bundles,
        what=f"the GPUs of {plan.rollout_workers} rollout workers (rl.rollout_workers) x {plan.worker_gpus:g} "
        f"(engine.kind={plan.engine_kind}, engine.tensor_parallel_size={plan.tensor_parallel_size})",
        timeout_s=timeout_s,
    )


def worker_options(
    worker_index: int,
    num_gpus: float = 0,
    reservation: Reservation | None = None,
    max_concurrency: int = 1000,
) -> dict[str, Any]:
    """Ray options of rollout worker `worker_index`: its engine's GPUs (bundle `worker_index` of the reservation)."""
    if reservation is not None:
        opts = reservation.options(worker_index, num_gpus)
    else:
        opts = actor_options(num_gpus)
    return {**opts, "max_concurrency": max_concurrency}


def spawn_worker(
    factory: Any,
    worker_index: int,
    group_size: int,
    temperature: float,
    base_seed: int,
    num_gpus: float = 0,
    max_concurrency: int = 1000,
    reservation: Reservation | None = None,
) -> Any:
    opts = worker_options(worker_index, num_gpus, reservation, max_concurrency)
    return RolloutWorker.options(**opts).remote(factory, worker_index, group_size, temperature, base_seed)
