"""rl.weight_sync=broadcast on the CPU (gloo): bucket layout, bit-identical weights in the transformers engine while
it generates, exact per-token versions, the controller with real Ray workers (and a worker replaced mid-run), the
DeepSpeed sender, disk sync in the model's dtype, and the config checks."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from types import SimpleNamespace

import pytest
import ray
import torch

from asearcher.config import RLConfig, load_config
from asearcher.llm.engine import GenerationRequest, SamplingParams
from asearcher.llm.weight_broadcast import (
    BroadcastUpdate,
    GroupSpec,
    TensorMeta,
    digest,
    leave_groups,
    metas_of,
    plan_buckets,
    send_weights,
    unique_tensors,
    with_wire_dtype,
)
from tests.rl.support import make_tiny_model
from tests.rl.test_system import ray_local  # noqa: F401  (module-scoped local Ray)


# ---- layout ---------------------------------------------------------------------------------------------------------
def test_buckets_are_per_dtype_capped_and_sent_when_complete():
    metas = [
        TensorMeta("a", (4, 4), "float32"),  # 64 B
        TensorMeta("b", (8,), "bfloat16"),  # 16 B
        TensorMeta("c", (10,), "float32"),  # 40 B: a + c = 104 > 100, so c opens a second fp32 bucket
        TensorMeta("d", (100,), "float32"),  # 400 B > cap: a bucket of its own
        TensorMeta("e", (2,), "bfloat16"),
    ]
    layout = plan_buckets(metas, 100)
    got = [(b.dtype, [layout.tensors[i].name for i, _ in b.items]) for b in layout.buckets]
    # ordered by their last tensor: a bucket is broadcast as soon as its last tensor is packed
    assert got == [("float32", ["a"]), ("float32", ["c"]), ("float32", ["d"]), ("bfloat16", ["b", "e"])]
    offsets = {layout.tensors[i].name: off for b in layout.buckets for i, off in b.items}
    assert offsets["b"] == 0 and offsets["e"] == 8
    assert layout.nbytes == 64 + 40 + 400 + 20
    # floating tensors travel in the engines' dtype, integer ones as they are
    wire = with_wire_dtype([TensorMeta("w", (2,), "float32"), TensorMeta("i", (2,), "int64")], "bfloat16")
    assert [m.dtype for m in wire] == ["bfloat16", "int64"]
    with pytest.raises(ValueError, match="duplicate"):
        plan_buckets([metas[0], metas[0]], 100)


def test_object_store_payload_is_raw_bytes_viewed_back_bit_identically(ray_local):  # noqa: F811
    """rl.weight_sync=object_store puts StoredWeights (numpy bytes: Ray maps them into each worker, no unpickled
    copies); the worker views them back as tensors of the original dtypes and shapes."""
    from asearcher.rl.system.weight_sync import StoredWeights

    g = torch.Generator().manual_seed(0)
    sd = {
        "w": torch.randn(64, 32, generator=g),
        "b": torch.randn(32, generator=g).to(torch.bfloat16),
        "scale": torch.tensor(3.5),
        "t": torch.randn(8, 8, generator=g).t(),  # not contiguous
    }
    got = ray.get(ray.put(StoredWeights.of(sd.items()))).tensors()
    assert got.keys() == sd.keys()
    for k, v in sd.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k


# ---- the transformers engine receiving under load ------------------------------------------------------------------
def _store():
    from torch.distributed import TCPStore

    return TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _perturbed(engine, seed: int) -> list[tuple[str, torch.Tensor]]:
    """New float32 weights for the engine's model, as a trainer would send them (tied lm_head once)."""
    g = torch.Generator().manual_seed(seed)
    sd = engine.model.state_dict()
    return [
        (k, (v.float() + 0.05 * torch.randn(v.shape, generator=g)).contiguous())
        for k, v in unique_tensors(sd.items())
    ]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gloo_broadcast_lands_bit_identical_while_two_engines_generate(tmp_path, dtype):
    from asearcher.llm.transformers_engine import TransformersEngine

    model = make_tiny_model(tmp_path / "tiny", hidden=64, layers=2)
    engines = [TransformersEngine(str(model), device="cpu", dtype=dtype, max_batch_size=8) for _ in range(2)]
    new = _perturbed(engines[0], seed=1)
    # the engines are all `dtype`: floating tensors travel in it (the cast is the one the engine would make)
    layout = plan_buckets(with_wire_dtype(metas_of(new), dtype), bucket_bytes=8 * 1024)
    assert len(layout.buckets) > 3  # several buckets, so the update really arrives piece by piece
    store = _store()
    spec = GroupSpec(f"t-{dtype}", 1, "127.0.0.1", store.port, 3, "gloo", 60)
    n_tokens = 120

    async def scenario():
        reqs = [
            asyncio.create_task(
                e.agenerate(GenerationRequest([2, 3, 4 + i], SamplingParams(max_new_tokens=n_tokens, seed=i)))
            )
            for e in engines
            for i in range(4)
        ]
        while not all(len(e.inflight()) == 4 and e.inflight()[0]["output_tokens"] >= 5 for e in engines):
            await asyncio.sleep(0.005)  # every request is decoding under version 0
        sender = threading.Thread(target=send_weights, args=(spec, layout, new))
        sender.start()
        await asyncio.gather(
            *(e.update_weights(BroadcastUpdate(spec, r + 1, layout, 1), 1) for r, e in enumerate(engines))
        )
        sender.join()
        results = await asyncio.gather(*reqs)
        for e in engines:
            await e.aclose()
        return results

    try:
        results = asyncio.run(scenario())
    finally:
        leave_groups(spec.name)
    want = {k: v.to(getattr(torch, dtype)) for k, v in new}
    for e in engines:
        assert e.version == 1
        sd = e.model.state_dict()
        for k, v in want.items():
            assert torch.equal(sd[k], v), k  # bit-identical
        assert torch.equal(sd["lm_head.weight"], want["model.embed_tokens.weight"])  # still tied
        assert e.weights_digest() == digest(sd.items())
    spanning = 0
    for r in results:
        v = r.output_versions
        assert v[:5] == [0] * 5 and v == sorted(v) and set(v) <= {0, 1}  # switched at most once, never back
        spanning += v[-1] == 1
    # the requests that outlived the update carry on under the new weights (some stop early at eos)
    assert spanning >= 1, [r.output_versions for r in results]


# ---- the vLLM engine's receiving path (its worker extension), with a double of vLLM -------------------------------
class _FakeVLLMWorker:
    """One tensor-parallel worker of the double: vLLM mixes WeightReceiverExtension into its worker class."""

    def __init__(self, rank: int):
        self.rank, self.device = rank, "cpu"
        self.loads: list[list[tuple[str, torch.Tensor]]] = []
        self.model_runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load))

    def _load(self, weights):
        self.loads.append([(k, v.clone()) for k, v in weights])


def test_vllm_workers_receive_the_broadcast_and_load_each_bucket():
    """VLLMEngineActorImpl.update_weights(BroadcastUpdate): in-flight requests are aborted and continued, and every
    tensor-parallel worker joins the group at rank update.rank + its rank (metadata as plain lists, as vLLM's RPC
    carries it), receives every bucket and passes it to model.load_weights as it arrives."""
    from asearcher.llm.vllm_engine import WeightReceiverExtension
    from tests.llm.test_vllm import FakeActor, FakeAsyncLLM

    class TPFakeAsyncLLM(FakeAsyncLLM):
        def __init__(self):
            super().__init__()
            self.workers = [type("W", (_FakeVLLMWorker, WeightReceiverExtension), {})(r) for r in range(2)]

        async def collective_rpc(self, method, args=()):
            if not isinstance(method, str):
                return await super().collective_rpc(method, args)
            # vLLM runs the method in every worker process at once (the broadcast is collective)
            out = await asyncio.gather(*(asyncio.to_thread(getattr(w, method), *args) for w in self.workers))
            self.version += 1  # the double's tokens follow the loaded weights
            return out

    class TPFakeActor(FakeActor):
        def _create_engine(self, model, engine_kwargs):
            return TPFakeAsyncLLM()

    actor = TPFakeActor("fake")
    g = torch.Generator().manual_seed(0)
    new = [("embed.weight", torch.randn(16, 8, generator=g)), ("norm.weight", torch.randn(8, generator=g))]
    layout = plan_buckets(metas_of(new), bucket_bytes=128)
    store = _store()
    # the trainer and the engine's 2 tensor-parallel ranks
    spec = GroupSpec("vllm-tp", 1, "127.0.0.1", store.port, 3, "gloo", 60)

    async def scenario():
        task = asyncio.create_task(actor.generate([1, 2, 3], {"max_new_tokens": 40, "seed": 5}))
        while not actor._running:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # a few tokens under version 0
        sender = threading.Thread(target=send_weights, args=(spec, layout, new))
        sender.start()
        await actor.update_weights(BroadcastUpdate(spec, 1, layout, 1), 1)
        sender.join()
        return await task

    try:
        res = asyncio.run(scenario())
    finally:
        leave_groups(spec.name)
    k = res["output_versions"].index(1)
    assert 0 < k < 40 and res["output_versions"] == [0] * k + [1] * (40 - k)
    for w in actor.engine.workers:
        assert len(w.loads) == len(layout.buckets) > 1  # loaded bucket by bucket
        got = dict(kv for part in w.loads for kv in part)
        assert got.keys() == dict(new).keys() and all(torch.equal(got[n], t) for n, t in new)


# ---- the controller with real Ray workers -----------------------------------------------------------------------------
def _run_controller(cfg, factory, trainer, after_step=None):
    from asearcher.rl.system.controller import Controller
    from asearcher.rl.system.dataset import QuestionStream
    from asearcher.rl.system.rollout import spawn_worker
    from tests.rl.test_system import rows

    seed = 5
    ctl = Controller(
        cfg=cfg,
        trainer=trainer,
        stream=QuestionStream(rows(24), seed=seed),
        spawn_worker=lambda i: spawn_worker(factory, i, cfg.group_size, cfg.temperature, seed),
        progress=False,
        after_step=after_step,
    )

    async def main():
        try:
            await ctl.run()
            pings = await asyncio.gather(*(s.handle.ping.remote() for s in ctl.slots))
            digests = await asyncio.gather(*(s.handle.weights_digest.remote() for s in ctl.slots))
            return pings, digests
        finally:
            await ctl.shutdown()

    pings, digests = asyncio.run(main())
    return ctl, pings, digests


def _cfg(**kw) -> RLConfig:
    base = dict(
        steps=2,
        batch_size=2,
        group_size=2,
        max_head_offpolicyness=1,
        max_concurrent_rollouts=4,
        rollout_workers=2,
        dynamic_filtering=False,
        checkpoint_every=100,
        weight_sync="broadcast",
        weight_sync_bucket_mb=0.01,  # several buckets per version even for the tiny model
        optim={"lr": 1e-2, "weight_decay": 0.0},
    )
    base.update(kw)
    return RLConfig(**base)


def test_controller_broadcasts_to_ray_workers_bit_identically(ray_local, tmp_path):  # noqa: F811
    from asearcher.rl.trainers.torch_backend import TorchTrainer
    from tests.rl.test_system_real import TinyLMFactory

    model = make_tiny_model(tmp_path / "tiny", hidden=32, seed=3)
    cfg = _cfg()
    trainer = TorchTrainer(str(model), cfg, seed=5)
    init = digest(trainer.model.state_dict().items())
    ctl, pings, digests = _run_controller(cfg, TinyLMFactory(model, tokens_per_call=8), trainer)
    assert trainer.version == 2 and [r["step"] for r in ctl.step_log] == [1, 2]
    assert [p["version"] for p in pings] == [2, 2]
    final = digest(trainer.model.state_dict().items())
    assert final != init and digests == [final, final]  # every engine holds the trainer's bits
    assert ctl.sync.last_bytes > 0 and ctl.sync._generation == 1  # one group, formed once, reused per version
    for r in ctl.step_log:  # tokens recorded the versions that made them
        assert sum(r["token_staleness_hist"].values()) > 0


def test_controller_broadcast_survives_a_replaced_worker(ray_local, tmp_path):  # noqa: F811
    """A worker killed after step 1: its replacement changes the group, so every worker joins a new generation
    and gets the trainer's weights; the run finishes and every engine holds the final weights."""
    from asearcher.rl.trainers.torch_backend import TorchTrainer
    from tests.rl.test_system_real import TinyLMFactory

    model = make_tiny_model(tmp_path / "tiny", hidden=32, seed=3)
    cfg = _cfg(steps=3)
    trainer = TorchTrainer(str(model), cfg, seed=5)

    def after_step(ctl, step):
        if step == 1:
            ray.kill(ctl.slots[0].handle, no_restart=True)

    ctl, pings, digests = _run_controller(cfg, TinyLMFactory(model, tokens_per_call=8), trainer, after_step)
    assert trainer.version == 3 and ctl.counters["worker_restarts"] >= 1
    assert ctl.sync._generation >= 2
    final = digest(trainer.model.state_dict().items())
    assert [p["version"] for p in pings] == [3, 3] and digests == [final, final]


def test_broadcast_to_an_engine_that_cannot_receive_is_a_clear_error(ray_local):  # noqa: F811
    from asearcher.errors import UserFacingError
    from asearcher.rl.system.rollout import spawn_worker
    from asearcher.rl.system.weight_sync import WeightSync
    from tests.rl.doubles import SimFactory, TableTrainer

    w = spawn_worker(SimFactory({"kind": "fixed", "turns": 1}), 0, 1, 1.0, 1)
    sync = WeightSync("broadcast")
    try:
        with pytest.raises(UserFacingError, match="rl.weight_sync=broadcast"):
            asyncio.run(sync.push(TableTrainer(seed=1), 0, [w]))
    finally:
        sync.close()
        ray.kill(w)


# ---- DeepSpeed rank 0 as the sender ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_deepspeed_ranks_broadcast_their_weights(tmp_path):
    """The DeepSpeed trainer (one CPU rank, a Ray actor) sends its weights over gloo to an engine in this process."""
    from asearcher.llm.transformers_engine import TransformersEngine
    from asearcher.rl.trainers import make_trainer
    from tests.rl.support import random_groups

    model = make_tiny_model(tmp_path / "tiny")
    ds = make_trainer(str(model), RLConfig(backend="deepspeed", zero_stage=1, optim={"lr": 1e-2}))
    engine = TransformersEngine(str(model), device="cpu")
    store = _store()
    try:
        ds.train_step(random_groups(2, 3))
        layout = plan_buckets(ds.weight_metas(), 4096)
        # the trainer started Ray; its rank reaches the store on this node
        spec = GroupSpec("ds", 1, ray.util.get_node_ip_address(), store.port, 2, "gloo", 60)

        async def receive():
            await engine.update_weights(BroadcastUpdate(spec, 1, layout, 1), 1)

        t = threading.Thread(target=lambda: asyncio.run(receive()))
        t.start()
        ds.send_weights(spec, layout)
        t.join()
        want = ds.get_weights()
        got = engine.model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
    finally:
        leave_groups("ds")
        asyncio.run(engine.aclose())
        ds.close()


# ---- disk sync in the model's dtype --------------------------------------------------------------------------------
def test_disk_sync_writes_the_models_dtype_and_only_the_weights(tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from asearcher.llm.transformers_engine import TransformersEngine
    from asearcher.rl.system.weight_sync import WeightSync
    from asearcher.rl.trainers.torch_backend import TorchTrainer

    src = make_tiny_model(tmp_path / "fp32")
    bf16 = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).save_pretrained(bf16)
    trainer = TorchTrainer(str(bf16), RLConfig())
    assert next(trainer.model.parameters()).dtype == torch.float32  # trains in fp32 ...
    path = WeightSync("disk", tmp_path / "run").publish(trainer, 1)
    with safe_open(f"{path}/model.safetensors", "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.bfloat16}  # ... but sends what the model is
    assert json.loads((tmp_path / "run/weight_updates/v1/config.json").read_text())["dtype"] == "bfloat16"
    written = sorted(p.name for p in (tmp_path / "run/weight_updates/v1").iterdir())
    assert "tokenizer.json" not in written and not any("optim" in n for n in written)
    # an fp32 model stays fp32, and the engine loads what disk sync wrote
    trainer32 = TorchTrainer(str(src), RLConfig())
    path32 = WeightSync("disk", tmp_path / "run32").publish(trainer32, 1)
    with safe_open(f"{path32}/model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    engine = TransformersEngine(str(bf16), device="cpu", dtype="bfloat16")
    asyncio.run(engine.update_weights(path, 1))
    got = engine.model.state_dict()
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(got[k], v.to(torch.bfloat16)), k
    asyncio.run(engine.aclose())
    # save_hf (final model, evaluation) keeps the tokenizer, in the model's dtype too
    trainer.save_hf(tmp_path / "final")
    assert (tmp_path / "final" / "tokenizer.json").exists()
    assert json.loads((tmp_path / "final/config.json").read_text())["dtype"] == "bfloat16"


# ---- config ---------------------------------------------------------------------------------------------------------
def test_config_checks_name_rl_weight_sync():
    from asearcher.config.checks import check_config

    def errors(*overrides):
        return [p for p in check_config(load_config(None, list(overrides))) if p.level == "error"]

    bad = errors("rl.weight_sync=broadcast", "engine.kind=openai", "engine.base_url=http://x/v1")
    assert any("rl.weight_sync" in p.keys and "openai" in p.message for p in bad)
    bad = errors("rl.weight_sync=nccl")
    assert any(p.keys[0] == "rl.weight_sync" and "'broadcast'" in p.message for p in bad)
    assert not [p for p in errors("rl.weight_sync=broadcast") if "rl.weight_sync" in p.keys]


def test_paper_recipes_broadcast_where_a_gpu_path_exists():
    from pathlib import Path

    recipes = sorted(Path(__file__).resolve().parents[2].glob("configs/paper/asearcher-*.yaml"))
    assert recipes
    for path in recipes:
        cfg = load_config(str(path), [])
        assert cfg.engine.kind == "vllm" and cfg.rl.trainer_gpus > 0, path.name
        assert cfg.rl.weight_sync == "broadcast", path.name
