"""The asynchronous RL system on real Ray actors with a real-torch table policy (see test_rl_system_doubles)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import ray
import torch

from asearcher.config import RLConfig
from asearcher.rl.system.controller import Controller
from asearcher.rl.system.dataset import QuestionStream
from asearcher.rl.system.metrics_log import MetricsLogger
from asearcher.rl.system.rollout import RolloutWorkerImpl, spawn_worker
from tests.rl.doubles import SimFactory, TableTrainer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_local():
    os.environ["PYTHONPATH"] = (
        f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # workers import tests.*
    )
    # address="local": always a fresh local instance, never another process's cluster from /tmp/ray
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", ignore_reinit_error=True
    )
    yield
    ray.shutdown()


def rows(n: int) -> list[dict]:
    return [{"qid": f"q{i}", "question": f"question {i}?", "answers": [f"a{i}"]} for i in range(n)]


def rl_cfg(**kw) -> RLConfig:
    base = dict(
        steps=3,
        batch_size=4,
        group_size=4,
        max_head_offpolicyness=0,
        max_concurrent_rollouts=16,
        rollout_workers=2,
        checkpoint_every=100,
    )
    base.update(kw)
    return RLConfig(**base)


def run_controller(
    cfg: RLConfig, factory: SimFactory, seed: int = 1, **kw
) -> tuple[Controller, TableTrainer]:
    trainer = TableTrainer(seed=seed)
    ctl = Controller(
        cfg=cfg,
        trainer=trainer,
        stream=QuestionStream(rows(24), seed=seed),
        spawn_worker=lambda i: spawn_worker(factory, i, cfg.group_size, cfg.temperature, seed),
        progress=False,
        **kw,
    )

    async def main():
        try:
            await ctl.run()
        finally:
            await ctl.shutdown()

    asyncio.run(main())
    return ctl, trainer


def sync_loop(cfg: RLConfig, trainer, stream: QuestionStream, worker: RolloutWorkerImpl) -> tuple[list, list]:
    """Plain synchronous RL: generate B accepted groups with the current weights, train, repeat.
    Returns (question draw numbers of each batch, train_step stats of each step)."""
    batches, stats = [], []

    async def main():
        for _ in range(cfg.steps):
            await worker.update_weights(trainer.get_weights(), trainer.version)
            batch = []
            while len(batch) < cfg.batch_size:
                qs = [stream.next().to_dict() for _ in range(cfg.batch_size - len(batch))]
                groups = await asyncio.gather(*(worker.run_group(q, trainer.version) for q in qs))
                batch += [g for g in groups if not g.all_equal()]
            batch.sort(key=lambda g: g.meta["index"])
            batches.append([g.meta["index"] for g in batch])
            stats.append(trainer.train_step(batch))
        await worker.aclose()

    asyncio.run(main())
    return batches, stats


def sync_reference(cfg: RLConfig, factory: SimFactory, seed: int = 1) -> tuple[TableTrainer, list[list[int]]]:
    trainer = TableTrainer(seed=seed)
    worker = RolloutWorkerImpl(factory, 0, cfg.group_size, cfg.temperature, seed)
    batches, _ = sync_loop(cfg, trainer, QuestionStream(rows(24), seed=seed), worker)
    return trainer, batches


@pytest.mark.parametrize("sync_mode", ["object_store", "disk"])
def test_eta0_matches_synchronous_loop(ray_local, tmp_path, sync_mode):
    factory = SimFactory({"kind": "fixed", "turns": 2}, token_delay_s=0.001)
    cfg = rl_cfg(weight_sync=sync_mode)
    ctl, trainer = run_controller(cfg, factory, output_dir=tmp_path)
    ref, ref_batches = sync_reference(cfg, factory)
    assert trainer.version == ref.version == cfg.steps
    assert [r["batch_indices"] for r in ctl.step_log] == ref_batches
    assert torch.allclose(trainer.logits, ref.logits, atol=1e-6)
    assert not torch.allclose(trainer.logits, torch.zeros_like(trainer.logits))  # it did learn something
    # eta = 0: every token of every trained sample came from the weights of the step that trains it.
    for r in ctl.step_log:
        assert set(r["token_staleness_hist"]) == {"0"}
        assert set(r["submit_versions"]) == {r["step"] - 1}
    # dynamic filtering happened and was counted, and more questions were drawn to fill the batches
    assert ctl.counters["groups_filtered"] > 0
    assert ctl.counters["groups_admitted"] == cfg.steps * cfg.batch_size + ctl.counters["groups_filtered"]
    if sync_mode == "disk":  # workers loaded HF dirs; only the newest one is kept
        assert [p.name for p in (tmp_path / "weight_updates").iterdir()] == [f"v{cfg.steps}"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, weight_sync=nccl is the NCCL broadcast")
def test_nccl_sync_without_cuda_is_a_clear_error(tmp_path):
    from asearcher.rl.system.weight_sync import WeightSync

    with pytest.raises(NotImplementedError, match="object_store"):
        WeightSync("nccl", tmp_path)


def test_train_cli_without_retrieval_server_is_a_user_error(tmp_path, capsys, monkeypatch):
    from asearcher.cli import main
    from tests.rl.doubles import write_questions

    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL", raising=False)
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)
    train = write_questions(tmp_path / "t.jsonl", 3)
    rc = main(
        [
            "train",
            "--model",
            "m",
            "--train",
            str(train),
            "--output",
            str(tmp_path / "o"),
            "--trainer-factory",
            "tests.rl.doubles:cli_trainer",
        ]
    )
    assert rc == 2 and "--retrieval-url" in capsys.readouterr().err
    rc = main(
        ["train", "--model", "m", "--train", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]
    )
    assert rc == 2 and "missing.jsonl does not exist" in capsys.readouterr().err


def test_inflight_trajectories_span_weight_update(ray_local):
    """update_weights lands mid-generation: the trajectory's tokens carry both versions."""
    factory = SimFactory({"kind": "fixed", "turns": 3}, token_delay_s=0.02, tokens_per_call=20)  # >= 1.2 s
    w = spawn_worker(factory, 0, 2, 1.0, 1)

    async def main():
        await w.ping.remote()  # actor is up: the update below lands mid-trajectory, not before it
        fut = w.run_group.remote({"index": 0, "qid": "q0", "question": "q?", "answers": ["a"]}, 0)
        await asyncio.sleep(0.1)
        await w.update_weights.remote({"logits": torch.ones(6, 6)}, 7)
        return await fut

    g = asyncio.run(main())
    ray.kill(w)
    for s in g.samples:
        versions = [v for c in s.trajectory.llm_calls for v in c.output_versions]
        assert versions[0] == 0 and versions[-1] == 7 and versions == sorted(versions)


def test_async_run_logs_staleness_and_survives_worker_death(ray_local, tmp_path):
    factory = SimFactory({"kind": "fixed", "turns": 3}, token_delay_s=0.005, tool_latency_s=0.005)
    cfg = rl_cfg(steps=4, batch_size=2, max_head_offpolicyness=2, checkpoint_every=2)
    killed = []

    def after_step(ctl: Controller, step: int):
        if step == 1:
            killed.append(ctl.slots[0].handle)
            ray.kill(ctl.slots[0].handle, no_restart=True)

    metrics = MetricsLogger(tmp_path, tensorboard=False)
    ctl, trainer = run_controller(cfg, factory, output_dir=tmp_path, metrics=metrics, after_step=after_step)
    metrics.close()
    assert trainer.version == 4 and killed
    assert ctl.counters["worker_restarts"] >= 1 and ctl.counters["questions_requeued"] >= 1
    rows_ = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_] == [1, 2, 3, 4]
    hist: dict[str, int] = {}
    for r in rows_:
        for k, v in r["token_staleness_hist"].items():
            hist[k] = hist.get(k, 0) + v
        assert r["turns_max"] == 3 and 0 <= r["trainer_idle_frac"] <= 1
        assert r["peak_rss_mib"] > 0
    assert any(int(k) >= 1 for k in hist)  # eta > 0: some trained tokens came from older weights
    assert (tmp_path / "metrics.csv").read_text().startswith("step,")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_2", "step_4"]
    # no question trained twice
    idx = [i for r in rows_ for i in r["batch_indices"]]
    assert len(idx) == len(set(idx))


def test_curriculum_trains_only_questions_that_need_many_tool_calls(ray_local, monkeypatch):
    """rl.curriculum_min_tool_calls (QwQ stage 2): a group is kept only when it was solved and every solving
    trajectory used at least N tool calls; the others are dropped like filtered groups and more are drawn."""
    from asearcher.agent.trajectory import ToolCall, Trajectory
    from asearcher.rl.algo.types import Group, ScoredTrajectory

    def sample(n_tools, reward):
        t = Trajectory(qid="q", question="", answers=[], agent="t", prompt_hash="")
        t.events = [ToolCall("search", "x", True, []) for _ in range(n_tools)]
        return ScoredTrajectory(t, reward)

    def group(*samples):
        return Group(qid="q", question="", answers=[], samples=list(samples), submit_version=0)

    assert group(sample(3, 1.0), sample(1, 0.0)).needs_tool_calls(2)  # the quick try failed
    assert not group(sample(3, 1.0), sample(1, 1.0)).needs_tool_calls(2)  # solvable with one call
    assert not group(sample(5, 0.0), sample(6, 0.0)).needs_tool_calls(2)  # unsolved: need unknown

    # turns (= tool calls + 1) long-tailed per trajectory, so some groups pass and some do not
    factory = SimFactory({"kind": "tail", "short_mean": 3.0, "p_long": 0.0})
    cfg = rl_cfg(steps=2, batch_size=2, curriculum_min_tool_calls=2, max_head_offpolicyness=1)
    trained = []
    train_step = TableTrainer.train_step
    monkeypatch.setattr(
        TableTrainer, "train_step", lambda self, groups: (trained.extend(groups), train_step(self, groups))[1]
    )
    ctl, trainer = run_controller(cfg, factory)
    assert trainer.version == 2 and len(trained) == 4
    assert ctl.counters["groups_curriculum_filtered"] > 0
    assert all(g.needs_tool_calls(2) for g in trained)
