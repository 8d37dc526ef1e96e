"""GPU ownership (issue 9, item 3): one owner per GPU, every paper recipe fits its allocation, and one GPU fewer is a
clear error before training starts, never a hang.

Ray takes logical GPUs on a CPU machine, so a fake cluster of a recipe's size (cluster.train_nodes nodes of
cluster.gpus_per_node GPUs each, `ray.cluster_utils.Cluster`) stands in for its allocation. The recipes' own
reservation code runs against it (`asearcher train`'s pre-flight + rollout reservation, the DeepSpeed trainer's rank
reservation), with the trainer ranks and vLLM's engine replaced by CPU doubles that go through the same Ray requests
(`rank_options`, `spawn_worker`, and the real `VLLMEngine` with only vLLM's AsyncLLM swapped out).

Cost: the 16 fake nodes take about a minute to start on the 2-core CI machine, so they are started once, in one test,
for every recipe (an actor process costs about a second each here, so the test starts one trainer rank and one rollout
worker per placement shape, not all 128 actors: the reservations already hold every GPU of the run, so a sampled
actor that asked Ray for one GPU more than its bundle, or an engine that reserved its GPUs a second time, could not
be scheduled and the test would time out).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from asearcher.config import load_config
from asearcher.config.checks import ConfigCheckError, check_config, require_consistent
from asearcher.errors import UserFacingError
from asearcher.utils import placement
from asearcher.utils.placement import engine_placement, plan_gpus

REPO = Path(__file__).resolve().parents[2]
# the training recipes (the evaluation-only configs, eval-*.yaml with rl.enabled false, reserve no training cluster)
RECIPES = [p for p in sorted((REPO / "configs" / "paper").glob("*.yaml")) if load_config(p).rl.enabled]


def recipe_ids() -> list[str]:
    return [p.stem for p in RECIPES]


# ---- the arithmetic and the config check (no Ray) -------------------------------------------------------------------
@pytest.mark.parametrize("recipe", RECIPES, ids=recipe_ids())
def test_each_recipe_reserves_exactly_its_allocation(recipe):
    cfg = load_config(recipe)
    rl, engine, cluster = cfg.rl, cfg.engine, cfg.cluster
    plan = plan_gpus(rl, engine)
    assert plan.worker_gpus == engine.tensor_parallel_size  # a worker owns its engine's GPUs, nothing more
    assert plan.trainer_gpus == rl.trainer_gpus and plan.rollout_gpus == rl.rollout_gpus
    assert plan.ray_gpus == cluster.train_nodes * cluster.gpus_per_node == 128
    # the old requests: each worker rollout_gpus / rollout_workers GPUs AND its vLLM actor tensor_parallel_size more
    old = rl.trainer_gpus + rl.rollout_gpus + rl.rollout_workers * engine.tensor_parallel_size
    assert old > cluster.train_nodes * cluster.gpus_per_node
    assert not [
        p for p in check_config(cfg) if "cluster.gpus_per_node" in p.keys or "rl.rollout_gpus" in p.keys
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=recipe_ids())
def test_config_check_names_the_keys_of_one_gpu_too_many(recipe):
    cfg = load_config(recipe, [f"rl.trainer_gpus={load_config(recipe).rl.trainer_gpus + 1}"])
    with pytest.raises(ConfigCheckError) as e:
        require_consistent(cfg)
    msg = str(e.value)
    for key in ("rl.trainer_gpus", "rl.rollout_workers", "engine.tensor_parallel_size", "cluster.train_nodes",
                "cluster.gpus_per_node"):  # fmt: skip
        assert key in msg
    assert "needs 129 GPUs" in msg and "= 128" in msg and "missing 1" in msg


def test_config_check_engines_per_node_and_rollout_gpus():
    qwq = REPO / "configs" / "paper" / "asearcher-web-qwq-stage1.yaml"
    # 22 nodes of 6 GPUs hold 132 GPUs but only 22 engines of 4 GPUs (one per node): 24 cannot be placed
    cfg = load_config(qwq, ["cluster.train_nodes=22", "cluster.gpus_per_node=6"])
    errs = [p for p in check_config(cfg) if p.level == "error"]
    assert any("1 engines of 4 GPUs fit a node of 6" in p.message for p in errs), errs
    cfg = load_config(qwq, ["cluster.gpus_per_node=2", "cluster.train_nodes=64"])
    assert any(p.keys == ("engine.tensor_parallel_size", "cluster.gpus_per_node") for p in check_config(cfg))
    # rl.rollout_gpus sizes the SLURM request: it must equal what the workers own
    cfg = load_config(qwq, ["rl.rollout_gpus=24"])
    errs = [p for p in check_config(cfg) if p.level == "error"]
    assert any(p.keys[0] == "rl.rollout_gpus" and "96" in p.message for p in errs), errs
    default = load_config(REPO / "configs" / "default.yaml")
    assert plan_gpus(default.rl, default.engine).total_gpus == 0
    assert not [p for p in check_config(default) if "cluster.gpus_per_node" in p.keys]


def test_engine_runs_where_its_gpus_are_held():
    assert engine_placement(4, held=4) == "in_process"  # a rollout worker that owns the engine's GPUs
    assert (
        engine_placement(4, held=0) == "actor"
    )  # a driver without GPUs (evaluation): an actor reserves them
    with pytest.raises(UserFacingError, match="holds 1 GPU.*tensor_parallel_size=4"):
        engine_placement(4, held=1)
    opts = placement.actor_options(0)
    assert opts["num_gpus"] == 0 and opts["runtime_env"]["env_vars"]["CUDA_VISIBLE_DEVICES"] == ""
    assert (
        "runtime_env" not in placement.actor_options(2) and placement.engine_actor_options(4)["num_gpus"] == 4
    )


# ---- a double of vLLM's AsyncLLM, for the real VLLMEngine -----------------------------------------------------------
class RecordingAsyncLLM:
    """Stands in for vllm's AsyncLLM: records its engine arguments, echoes tokens, loads 'weights'."""

    def __init__(self, engine_kwargs: dict[str, Any]):
        self.engine_kwargs = dict(engine_kwargs)
        self.loaded: list[Any] = []
        self.model_runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load))

    def _load(self, weights):
        self.loaded.extend(weights)

    async def generate(self, prompt, sp, request_id):
        out = list(prompt[-1:]) * sp["max_tokens"]
        lps = [{t: SimpleNamespace(logprob=-0.5)} for t in out]
        yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=out, logprobs=lps, finish_reason="length",
                                                       stop_reason=None, text="")])  # fmt: skip

    async def abort(self, ids):
        pass

    async def collective_rpc(self, fn, args=()):
        return [fn(self, *args)]

    async def reset_prefix_cache(self):
        pass

    def shutdown(self):
        pass


def fake_vllm(module: Any, set_attr: Any = setattr) -> None:
    """Swap vLLM itself (not installed here) for RecordingAsyncLLM in asearcher.llm.vllm_engine (`module`)."""
    set_attr(module, "require_vllm", lambda: None)
    set_attr(module.VLLMEngineActorImpl, "_create_engine", lambda self, model, kw: RecordingAsyncLLM(kw))
    set_attr(module.VLLMEngineActorImpl, "_request", lambda self, prompt, sp_kwargs: (prompt, sp_kwargs))


# the old code starts an actor asking Ray for 4 GPUs more and waits for it in C (a signal cannot stop it)
@pytest.mark.timeout(120, method="thread")
def test_vllm_engine_in_a_gpu_holding_process_reserves_nothing(monkeypatch):
    """The real VLLMEngine in a process that holds its tp GPUs (a rollout worker): the engine runs in that process
    on vLLM's multiprocessing executor; no actor, no Ray request. (Old code: always an actor with tp more GPUs.)"""
    import ray

    from asearcher.llm import vllm_engine
    from asearcher.llm.engine import GenerationRequest, SamplingParams

    fake_vllm(vllm_engine, monkeypatch.setattr)
    monkeypatch.setattr(placement, "held_gpu_ids", lambda: ["4", "5", "6", "7"])
    was_initialized = ray.is_initialized()
    engine = vllm_engine.VLLMEngine("fake/model", tokenizer=SimpleNamespace(decode=lambda ids, **k: "x"),
                                    tensor_parallel_size=4)  # fmt: skip
    assert engine.placement == "in_process" and engine._actor is None
    assert ray.is_initialized() == was_initialized  # no Ray start, no actor
    kw = engine._impl.engine.engine_kwargs
    assert kw["tensor_parallel_size"] == 4 and kw["distributed_executor_backend"] == "mp"

    async def go():
        r = await engine.agenerate(GenerationRequest([3, 9], SamplingParams(max_new_tokens=3, seed=1)))
        await engine.update_weights({"w": 1}, 7)
        await engine.aclose()
        return r

    r = asyncio.run(go())
    assert r.output_ids == [9, 9, 9] and engine.version == 7 and engine._impl.engine.loaded
    assert vllm_engine.vllm_parallel_kwargs(1) == {}  # one GPU: vLLM's single-process executor


def test_vllm_engine_actor_without_enough_gpus_is_an_error(monkeypatch):
    """Outside a rollout worker (evaluation) the engine is an actor reserving tensor_parallel_size GPUs: on a Ray
    cluster with fewer it is a clear error, not an actor that waits forever."""
    import ray

    from asearcher.llm import vllm_engine

    fake_vllm(vllm_engine, monkeypatch.setattr)
    monkeypatch.setattr(placement, "held_gpu_ids", lambda: [])
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"GPU": 2.0, "CPU": 8.0})
    with pytest.raises(UserFacingError, match="tensor_parallel_size=4 GPUs but the Ray cluster has 2"):
        vllm_engine.VLLMEngine("fake/model", tokenizer=object(), tensor_parallel_size=4)


# ---- the fake cluster ----------------------------------------------------------------------------------------------
class RankDouble:
    """A DeepSpeed rank's stand-in: DeepSpeedWorker's constructor, no DeepSpeed; reports what Ray gave it."""

    def __init__(self, rank: int, world: int, model_path: str, cfg_dict: dict, seed: int):
        self.rank = rank

    def whoami(self) -> dict[str, Any]:
        import ray

        return {"rank": self.rank, "node": ray.get_runtime_context().get_node_id(),
                "gpus": placement.held_gpu_ids(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}  # fmt: skip


class VLLMDoubleFactory:
    """Rollout components with the REAL engine (make_engine -> VLLMEngine), only vLLM's AsyncLLM swapped out."""

    def __init__(self, engine_cfg: Any):
        self.engine_cfg = engine_cfg

    def build(self, worker_index: int):
        from asearcher.llm import vllm_engine
        from asearcher.llm.factory import make_engine
        from asearcher.rl.system.rollout import RolloutComponents

        fake_vllm(vllm_engine)  # this is the worker's own process

        async def score(traj, q):
            return 0.0, {}

        return RolloutComponents(make_engine(self.engine_cfg), None, None, score)


class CpuFactory:
    """A worker whose engine needs no GPU (the CPU default's transformers engine, an OpenAI endpoint)."""

    def build(self, worker_index: int):
        from asearcher.rl.system.rollout import RolloutComponents

        async def score(traj, q):
            return 0.0, {}

        return RolloutComponents(SimpleNamespace(version=0, placement="in_process"), None, None, score)


def double_factory(cfg: Any, model_dir: str, retrieval_url: str | None) -> VLLMDoubleFactory:
    """--rollout-factory plug-in for `asearcher train`."""
    return VLLMDoubleFactory(cfg.engine.model_copy(update={"model": model_dir}))


def start_fake_cluster(nodes: int, gpus_per_node: int):
    """`nodes` Ray nodes of `gpus_per_node` logical GPUs in this machine; the driver connects to it."""
    import ray
    import ray._private.utils as ray_utils
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "num_gpus": gpus_per_node, "object_store_memory": 80 * 1024 * 1024}
    write = ray_utils.write_ray_address
    # Cluster records its address for "ray.init() joins the last cluster": that would pull the Ray of other tests
    # running meanwhile on this machine into the fake cluster
    ray_utils.write_ray_address = lambda *a, **k: None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    finally:
        ray_utils.write_ray_address = write
    for _ in range(nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR")
    return cluster


def wait_gpus_free(expected: float, timeout: float = 30.0) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while ray.available_resources().get("GPU", 0.0) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("GPU", 0.0) == expected


def place_recipe(cfg, model_dir: Path, shapes_started: set) -> None:
    """Reserve a recipe's GPUs with the real code, check the layout, start sampled actors into their bundles."""
    import ray

    from asearcher.rl.system.rollout import spawn_worker
    from asearcher.rl.train import _reserve_gpus
    from asearcher.rl.trainers.deepspeed_backend import rank_options, reserve_ranks

    rl, engine, cluster = cfg.rl, cfg.engine, cfg.cluster
    plan = plan_gpus(rl, engine)
    t0 = time.monotonic()
    rollout = _reserve_gpus(cfg, plan)  # asearcher train's pre-flight + rollout reservation
    trainer, actors = None, []
    try:
        trainer = reserve_ranks(rl, timeout_s=20)  # what DeepSpeedTrainer reserves
        assert rollout is not None and trainer is not None
        # every GPU of the allocation is reserved, each once: nothing left over, nothing asked twice
        assert ray.available_resources().get("GPU", 0.0) == 0.0
        assert len(rollout.bundles) == rl.rollout_workers and len(trainer.bundles) == rl.trainer_gpus
        assert time.monotonic() - t0 < 20, "reservations are immediate when the allocation fits"
        per_node: dict[str, float] = {}
        for res in (rollout, trainer):
            for b, node in zip(res.bundles, res.bundle_nodes(), strict=True):
                per_node[node] = per_node.get(node, 0.0) + b["GPU"]
        assert len(per_node) == cluster.train_nodes and set(per_node.values()) == {
            float(cluster.gpus_per_node)
        }
        # the trainer's ranks packed on whole nodes (NCCL within a node), after the engines took theirs
        assert len(set(trainer.bundle_nodes())) == -(-rl.trainer_gpus // cluster.gpus_per_node)

        shape = (plan.worker_gpus, plan.trainer_ranks)
        if shape in shapes_started:
            return
        shapes_started.add(shape)
        last_rank, last_worker = rl.trainer_gpus - 1, rl.rollout_workers - 1
        rank = ray.remote(RankDouble).options(**rank_options(rl, trainer, last_rank))
        actors.append(rank.remote(last_rank, rl.trainer_gpus, str(model_dir), {}, 1))
        factory = VLLMDoubleFactory(engine.model_copy(update={"model": str(model_dir)}))
        actors.append(spawn_worker(factory, last_worker, rl.group_size, rl.temperature, cfg.seed,
                                   num_gpus=plan.worker_gpus, reservation=rollout))  # fmt: skip
        who = ray.get(actors[0].whoami.remote(), timeout=90)
        ping = ray.get(actors[1].ping.remote(), timeout=90)
        assert len(who["gpus"]) == 1 and who["cuda_visible_devices"] == who["gpus"][0]
        assert who["node"] == trainer.bundle_nodes()[last_rank]
        assert len(ping["gpus"]) == engine.tensor_parallel_size  # the worker owns its engine's GPUs ...
        assert ping["cuda_visible_devices"] == ",".join(ping["gpus"])
        assert ping["engine_placement"] == "in_process"  # ... and the engine reserved none of its own
    finally:
        for a in actors:
            ray.kill(a)
        for res in (trainer, rollout):
            if res is not None:
                res.release()
        wait_gpus_free(float(cluster.train_nodes * cluster.gpus_per_node))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_paper_recipes_on_fake_clusters_of_their_size(tmp_path, capsys, monkeypatch):
    """All recipes on one fake 16 x 8 cluster: each fits with every GPU reserved once; then one GPU fewer, held by
    someone else (the reservation gives up after its timeout) or missing from the cluster (`asearcher train` stops
    right after Ray starts), is a clear error naming the numbers, within seconds."""
    import ray

    from asearcher.cli import main
    from asearcher.rl.system.rollout import spawn_worker
    from asearcher.rl.train import _reserve_gpus
    from asearcher.rl.trainers.deepspeed_backend import reserve_ranks
    from tests.rl.support import make_tiny_model

    cfgs = [load_config(p) for p in RECIPES]
    sizes = {(c.cluster.train_nodes, c.cluster.gpus_per_node) for c in cfgs}
    assert sizes == {(16, 8)}, "one fake cluster per allocation size: extend this test for a new size"
    nodes, gpn = sizes.pop()
    model_dir = make_tiny_model(tmp_path / "tiny")  # a tokenizer for the engine
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    pythonpath = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    monkeypatch.setenv("PYTHONPATH", pythonpath)  # the Ray workers import tests.*
    if ray.is_initialized():
        ray.shutdown()
    cluster = start_fake_cluster(nodes, gpn)
    try:
        shapes: set = set()
        for path, cfg in zip(RECIPES, cfgs, strict=True):
            try:
                place_recipe(cfg, model_dir, shapes)
            except Exception as e:
                raise AssertionError(f"{path.name}: {e!r}") from e
        assert shapes == {(1.0, 32), (4.0, 32)}  # the two placement shapes: tp = 1 (7B/14B) and tp = 4 (QwQ)

        # a worker without GPUs (CPU engines, the default config) sees none of its node's GPUs
        w = spawn_worker(CpuFactory(), 0, 2, 1.0, 1, num_gpus=0)
        ping = ray.get(w.ping.remote(), timeout=90)
        ray.kill(w)
        assert ping["gpus"] == [] and ping["cuda_visible_devices"] == ""

        # one GPU held by someone else: the totals fit, the reservation cannot; it gives up after its timeout
        blocker = ray.util.placement_group([{"GPU": 1.0}])
        assert blocker.wait(timeout_seconds=30)
        monkeypatch.setenv(placement.PLACEMENT_TIMEOUT_ENV, "3")
        for cfg in cfgs[:1] + [c for c in cfgs if c.engine.tensor_parallel_size > 1][:1]:
            plan = plan_gpus(cfg.rl, cfg.engine)
            t0 = time.monotonic()
            rollout = _reserve_gpus(cfg, plan)
            try:
                with pytest.raises(UserFacingError) as e:
                    reserve_ranks(cfg.rl)
            finally:
                rollout.release()
            msg = str(e.value)
            assert time.monotonic() - t0 < 30 and "within 3 s" in msg and "rl.trainer_gpus" in msg
            assert "32 GPUs in 32 bundles of 1" in msg and "128 GPUs (31 free) on 16 node(s)" in msg, msg
        ray.util.remove_placement_group(blocker)
        wait_gpus_free(float(nodes * gpn))

        # one GPU missing from the cluster: replace a node of 8 by a node of 7 -> 127 GPUs
        cluster.remove_node(next(iter(cluster.worker_nodes)))
        cluster.add_node(num_cpus=1, num_gpus=gpn - 1, object_store_memory=80 * 1024 * 1024)
        deadline = time.monotonic() + 30
        while ray.cluster_resources().get("GPU", 0.0) != nodes * gpn - 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.cluster_resources().get("GPU", 0.0) == nodes * gpn - 1
        train = tmp_path / "train.jsonl"
        train.write_text(
            "".join(json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) + "\n" for i in range(4))
        )
        for path in (
            RECIPES[0],
            next(p for p, c in zip(RECIPES, cfgs, strict=True) if c.engine.tensor_parallel_size > 1),
        ):
            t0 = time.monotonic()
            rc = main(["train", "--config", str(path), "--model", str(model_dir), "--train", str(train),
                       "--output", str(tmp_path / path.stem), "--rollout-factory",
                       "tests.rl.test_placement:double_factory"])  # fmt: skip
            err = capsys.readouterr().err
            assert rc == 2, err
            assert time.monotonic() - t0 < 30, "an error at once, not a wait"
            assert "the run needs 128 GPUs" in err and "the Ray cluster has 127 GPUs" in err, err
            assert (
                "1 GPU(s) missing" in err and "cluster.train_nodes=16 x cluster.gpus_per_node=8 = 128" in err
            )
            assert "rl.trainer_gpus=32" in err and "rl.rollout_workers=" in err
            assert ray.available_resources().get("GPU", 0.0) == nodes * gpn - 1  # nothing reserved
        # on a joined cluster the pre-flight first gives late nodes time to come, then gives up
        plan = plan_gpus(cfgs[0].rl, cfgs[0].engine)
        t0 = time.monotonic()
        with pytest.raises(UserFacingError, match="after waiting 1 s for nodes to join"):
            placement.require_ray_gpus(plan, wait_s=1.0, poll_s=0.2)
        assert 1.0 <= time.monotonic() - t0 < 10
    finally:
        ray.shutdown()
        cluster.shutdown()
