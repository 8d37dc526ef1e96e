"""GPU ownership on Ray: every GPU of a run has exactly one owner, and a run too big for its cluster fails at once.

One Ray reservation per GPU, made by the process that uses it (docs/rl-system.md, "GPUs: one owner each"):

  actor                    what it asks Ray for                           who computes on the GPUs
  DeepSpeed trainer rank   1 GPU: bundle `rank` of the trainer group      the rank
  rollout worker           its engine's GPUs: bundle `i` of the rollout   its engine, in the worker's own process
                           group (vllm: engine.tensor_parallel_size;      (vLLM's tensor-parallel workers are child
                           transformers: one GPU or a share of one)       processes that inherit the worker's GPUs)
  vLLM engine              nothing when its process already holds its     -
                           GPUs (rollout worker); an actor with tp GPUs
                           when started by a process with none (eval)
  any other actor          0 GPUs, and CUDA_VISIBLE_DEVICES="" so it sees none (Ray >= 2.48 leaves the variable
                           unset for an actor without GPUs, which would let it use any GPU of its node)

Why the engine runs inside the rollout worker: vLLM's multiprocessing executor (the one used for tensor
parallelism here) needs all tp GPUs visible to the process that builds the engine, on one node. An actor that
reserves tp GPUs gets exactly that (Ray keeps one actor's GPUs on one node and sets CUDA_VISIBLE_DEVICES). vLLM's
other executor ("ray") creates tp GPU actors of its own and expects the builder to hold none; vLLM picks it
whenever it runs inside a placement group, which is where our GPU actors run, so the rollout path pins the
multiprocessing executor (`asearcher.llm.vllm_engine.vllm_parallel_kwargs`).

A run reserves all of its GPUs up front with placement groups: first the rollout bundles (tp GPUs each, so that
every engine finds tp free GPUs on one node), then the trainer's 1-GPU bundles (which fit any hole). A
reservation that is not met within a timeout is an error naming the numbers, never a wait forever.

`GpuPlan` is the arithmetic (what a config asks for), shared by the config check, `asearcher train` and the
placement test; the rest are the Ray requests, shared by the real actors and the test doubles.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from asearcher.errors import UserFacingError

#: runtime_env of an actor that reserved no GPU: it must not see (and use) one
HIDE_GPUS_ENV = {"CUDA_VISIBLE_DEVICES": ""}
#: seconds a placement group may take to be met before the run fails (default 300)
PLACEMENT_TIMEOUT_ENV = "ASEARCHER_PLACEMENT_TIMEOUT_S"
#: seconds `asearcher train` waits for the nodes of a joined cluster to bring their GPUs (default 120)
NODES_WAIT_ENV = "ASEARCHER_RAY_NODES_WAIT_S"


# ---- what a config asks for ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuPlan:
    """The GPUs of one training run: who reserves how many. Built from the config by `plan_gpus`."""

    trainer_backend: str
    trainer_ranks: int  # Ray actors of the trainer (DeepSpeed ranks); 0 when it runs in the driver (torch)
    rank_gpus: int  # GPUs per trainer rank: 1, or 0 for CPU ranks
    driver_gpus: int  # the torch trainer's GPU, used by the driver process outside Ray
    rollout_workers: int
    worker_gpus: float  # GPUs per rollout worker = its engine's GPUs
    engine_kind: str
    tensor_parallel_size: int

    @property
    def trainer_gpus(self) -> int:
        return self.trainer_ranks * self.rank_gpus

    @property
    def rollout_gpus(self) -> float:
        return self.rollout_workers * self.worker_gpus

    @property
    def ray_gpus(self) -> float:
        """GPUs reserved in Ray (what the Ray cluster must hold)."""
        return self.trainer_gpus + self.rollout_gpus

    @property
    def total_gpus(self) -> float:
        """GPUs of the allocation the run uses, the driver's included."""
        return self.ray_gpus + self.driver_gpus

    def trainer_bundles(self) -> list[dict[str, float]]:
        return [{"GPU": float(self.rank_gpus)} for _ in range(self.trainer_ranks)] if self.rank_gpus else []

    def rollout_bundles(self) -> list[dict[str, float]]:
        return (
            [{"GPU": float(self.worker_gpus)} for _ in range(self.rollout_workers)]
            if self.worker_gpus
            else []
        )

    def describe(self) -> str:
        """'128 GPUs: 32 for the trainer (rl.trainer_gpus=32 DeepSpeed ranks x 1 GPU) + 96 for rollouts (...)'."""
        parts = []
        if self.trainer_gpus:
            parts.append(
                f"{self.trainer_gpus} for the trainer (rl.trainer_gpus={self.trainer_ranks} DeepSpeed ranks x 1 GPU)"
            )
        if self.driver_gpus:
            parts.append(f"{self.driver_gpus} for the torch trainer in the driver process (rl.trainer_gpus)")
        if self.rollout_gpus:
            per = (
                f"engine.tensor_parallel_size={self.tensor_parallel_size}"
                if self.engine_kind == "vllm"
                else f"engine.kind={self.engine_kind}"
            )
            parts.append(
                f"{self.rollout_gpus:g} for rollouts (rl.rollout_workers={self.rollout_workers} x "
                f"{self.worker_gpus:g} GPUs per engine, {per})"
            )
        return f"{self.total_gpus:g} GPUs: " + (" + ".join(parts) if parts else "none (CPU run)")


def rollout_worker_gpus(rl: Any, engine: Any) -> float:
    """GPUs one rollout worker reserves: exactly what its engine computes on.

    vllm: engine.tensor_parallel_size. transformers: rl.rollout_gpus / rl.rollout_workers, at most one (the engine
    uses one device; a share below one lets workers share a GPU through Ray's fractional GPUs). openai: none (the
    model is served elsewhere)."""
    if engine.kind == "vllm":
        return float(engine.tensor_parallel_size)
    if engine.kind == "transformers" and rl.rollout_gpus > 0:
        return min(1.0, rl.rollout_gpus / rl.rollout_workers)
    return 0.0


def plan_gpus(rl: Any, engine: Any) -> GpuPlan:
    """The GPU plan of a run from its `rl` and `engine` config sections (duck-typed: this layer sits below config)."""
    deepspeed = rl.backend == "deepspeed"
    return GpuPlan(
        trainer_backend=rl.backend,
        trainer_ranks=max(1, rl.trainer_gpus) if deepspeed else 0,
        rank_gpus=1 if deepspeed and rl.trainer_gpus > 0 else 0,
        driver_gpus=1 if not deepspeed and rl.trainer_gpus > 0 else 0,
        rollout_workers=rl.rollout_workers,
        worker_gpus=rollout_worker_gpus(rl, engine),
        engine_kind=engine.kind,
        tensor_parallel_size=engine.tensor_parallel_size,
    )


def max_engines_per_node(worker_gpus: float, gpus_per_node: int) -> int:
    """How many engines of `worker_gpus` GPUs one node holds (a share below one packs 1/share per GPU)."""
    if worker_gpus <= 0:
        return 10**9
    if worker_gpus < 1:
        return gpus_per_node * int(math.floor(1 / worker_gpus + 1e-9))
    return gpus_per_node // int(math.ceil(worker_gpus))


# ---- what a process holds, and what an actor asks for ---------------------------------------------------------------
def held_gpu_ids() -> list[str]:
    """GPU ids Ray assigned to this process: [] in a driver, outside Ray, or in an actor that reserved none."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a core dependency
        return []
    if not ray.is_initialized():
        return []
    return [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def actor_options(
    gpus: float, *, cpus: float = 0, reservation: Reservation | None = None, bundle: int | None = None
) -> dict[str, Any]:
    """Ray options of an actor that computes on `gpus` GPUs: the one place that decides what actors ask for.

    With a reservation the actor takes bundle `bundle` of it (its request must fit the bundle). An actor without GPUs
    gets CUDA_VISIBLE_DEVICES="" so it cannot use a GPU someone else reserved."""
    opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus}
    if gpus == 0:
        opts["runtime_env"] = {"env_vars": dict(HIDE_GPUS_ENV)}
    if reservation is not None:
        if bundle is None:
            raise ValueError("a reservation needs a bundle index")
        opts["scheduling_strategy"] = reservation.strategy(bundle, gpus)
    return opts


def engine_placement(tensor_parallel_size: int, held: int | None = None) -> Literal["in_process", "actor"]:
    """Where an engine of `tensor_parallel_size` GPUs runs, so that its GPUs are reserved once.

    'in_process' when this process already holds exactly those GPUs (a rollout worker), 'actor' (reserving them)
    when it holds none (a driver); any other count is an error, never a second reservation."""
    held = len(held_gpu_ids()) if held is None else held
    if held == 0:
        return "actor"
    if held == tensor_parallel_size:
        return "in_process"
    raise UserFacingError(
        f"this process holds {held} GPU(s) from Ray but its engine needs engine.tensor_parallel_size="
        f"{tensor_parallel_size}: a rollout worker reserves exactly its engine's GPUs (rl.rollout_gpus = "
        "rl.rollout_workers x engine.tensor_parallel_size)"
    )


def engine_actor_options(tensor_parallel_size: int) -> dict[str, Any]:
    """Ray options of an engine actor started by a process without GPUs (evaluation): it owns its tp GPUs."""
    return actor_options(tensor_parallel_size)


# ---- reservations ----------------------------------------------------------------------------------------------------
def _placement_timeout(timeout_s: float | None) -> float:
    return float(os.environ.get(PLACEMENT_TIMEOUT_ENV, "300")) if timeout_s is None else float(timeout_s)


def cluster_gpu_summary() -> str:
    """'127 GPUs (127 free) on 16 nodes: 15 x 8, 1 x 7' for error messages."""
    import ray

    total = ray.cluster_resources().get("GPU", 0.0)
    free = ray.available_resources().get("GPU", 0.0)
    per_node: dict[float, int] = {}
    for n in ray.nodes():
        if n.get("Alive"):
            g = float(n.get("Resources", {}).get("GPU", 0.0))
            per_node[g] = per_node.get(g, 0) + 1
    nodes = sum(per_node.values())
    shape = ", ".join(f"{k} x {g:g}" for g, k in sorted(per_node.items(), reverse=True))
    return f"{total:g} GPUs ({free:g} free) on {nodes} node(s): {shape} GPUs per node"


class Reservation:
    """A Ray placement group: some of a run's GPUs, one bundle per actor, reserved at once or not at all."""

    def __init__(self, pg: Any, bundles: list[dict[str, float]], what: str):
        self.pg, self.bundles, self.what = pg, bundles, what

    @classmethod
    def create(
        cls,
        bundles: list[dict[str, float]],
        *,
        what: str,
        strategy: str = "PACK",
        timeout_s: float | None = None,
    ) -> Reservation:
        """Reserve `bundles`; a reservation not met within the timeout is removed and raises UserFacingError."""
        from ray.util.placement_group import placement_group, remove_placement_group

        timeout = _placement_timeout(timeout_s)
        pg = placement_group(bundles, strategy=strategy)
        if not pg.wait(timeout_seconds=timeout):
            remove_placement_group(pg)
            need = sum(b.get("GPU", 0.0) for b in bundles)
            raise UserFacingError(
                f"could not reserve {what} ({need:g} GPUs in {len(bundles)} bundles of "
                f"{bundles[0].get('GPU', 0.0):g}) within {timeout:g} s: the Ray cluster has {cluster_gpu_summary()}. "
                "Training would wait forever: ask for a larger allocation (cluster.train_nodes x "
                "cluster.gpus_per_node), lower rl.trainer_gpus / rl.rollout_workers, or free the GPUs held by other "
                f"jobs (${PLACEMENT_TIMEOUT_ENV} sets the timeout)"
            )
        return cls(pg, bundles, what)

    def strategy(self, bundle: int, gpus: float) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if not 0 <= bundle < len(self.bundles):
            raise ValueError(f"{self.what}: no bundle {bundle} (of {len(self.bundles)})")
        if gpus > self.bundles[bundle].get("GPU", 0.0):
            raise ValueError(
                f"{self.what}: an actor asking for {gpus:g} GPUs cannot fit bundle {self.bundles[bundle]}"
            )
        # capture_child_tasks stays False: whatever an actor starts is not placed (and never reserves) in our bundles
        return PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle)

    def options(self, bundle: int, gpus: float, *, cpus: float = 0) -> dict[str, Any]:
        return actor_options(gpus, cpus=cpus, reservation=self, bundle=bundle)

    def bundle_nodes(self) -> list[str]:
        """The node id of every bundle, in bundle order."""
        from ray.util.placement_group import placement_group_table

        by_index = placement_group_table(self.pg)["bundles_to_node_id"]
        return [by_index[i] for i in range(len(self.bundles))]

    def release(self) -> None:
        from ray.util.placement_group import remove_placement_group

        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None


def require_ray_gpus(
    plan: GpuPlan, *, allocation: str = "", wait_s: float | None = None, poll_s: float = 2.0
) -> float:
    """Right after Ray starts: the cluster must hold every GPU the run will reserve, or this raises UserFacingError
    naming the numbers and the keys (a run that asks Ray for more GPUs than exist waits forever).

    wait_s (default $ASEARCHER_RAY_NODES_WAIT_S or 0) gives the nodes of a cluster that is still forming time to join.
    Returns the cluster's GPU count."""
    import ray

    need = plan.ray_gpus
    wait = float(os.environ.get(NODES_WAIT_ENV, "0")) if wait_s is None else float(wait_s)
    deadline = time.monotonic() + wait
    while True:
        have = float(ray.cluster_resources().get("GPU", 0.0))
        if have + 1e-9 >= need:
            return have
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    waited = f" after waiting {wait:g} s for nodes to join" if wait > 0 else ""
    alloc = f"; {allocation}" if allocation else ""
    raise UserFacingError(
        f"the run needs {plan.describe()}, but the Ray cluster has {cluster_gpu_summary()}{waited}{alloc}. "
        f"{need - have:g} GPU(s) missing: training would wait forever for them. Ask for a larger allocation, or lower "
        "rl.trainer_gpus / rl.rollout_workers (each rollout worker owns engine.tensor_parallel_size GPUs)"
    )
