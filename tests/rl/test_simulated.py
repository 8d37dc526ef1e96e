"""The SIMULATED RL workload (asearcher.rl.simulated), shared by the system tests and the benchmark's simulated mode."""

from __future__ import annotations

import asyncio
import pickle
import random

import torch

from asearcher.llm.engine import SamplingParams
from asearcher.rl.algo.types import Group, ScoredTrajectory
from asearcher.rl.simulated import SimFactory, TableTrainer, draw_turns, score, target_token
from asearcher.tools.latency import paper_like_turns


def _rollout(factory: SimFactory, qid: str, seed: int):
    c = factory.build(0)
    return asyncio.run(
        c.agent.run(
            qid=qid,
            question="q",
            answers=["x"],
            engine=c.engine,
            tools=c.tools,
            sampling=SamplingParams(max_new_tokens=c.max_new_tokens, temperature=1.0, seed=seed),
            rng=random.Random(seed),
        )
    )


def test_long_tailed_turns_follow_the_shared_distribution():
    spec = {"kind": "tail", "p_long": 0.3, "long_min": 40}
    a, b = random.Random(3), random.Random(3)
    assert [draw_turns(a, spec) for _ in range(200)] == [
        paper_like_turns(b, p_long=0.3, long_min=40) for _ in range(200)
    ]
    assert draw_turns(random.Random(0), {"kind": "fixed", "turns": 5}) == 5


def test_factory_is_picklable_and_runs_the_drawn_turns():
    factory = pickle.loads(pickle.dumps(SimFactory({"kind": "fixed", "turns": 3}, tokens_per_call=2)))
    traj = _rollout(factory, "q7", seed=11)
    assert (
        len(traj.llm_calls) == 3 and len(traj.tool_calls) == 2
    )  # a search between turns, none after the last
    assert all(len(c.output_ids) == 2 for c in traj.llm_calls)
    assert traj.prediction == str(traj.llm_calls[-1].output_ids[-1])


def test_trainer_step_moves_the_policy_towards_rewarded_samples():
    factory = SimFactory({"kind": "fixed", "turns": 1}, tokens_per_call=1)
    trainer = TableTrainer(seed=0, lr=0.5)
    qid = "q1"
    t = target_token(qid)

    def p_target() -> float:
        return float(torch.softmax(trainer.logits.detach()[t], -1)[t])

    before = p_target()
    for step in range(5):
        samples = []
        for k in range(8):
            traj = _rollout(factory, qid, seed=100 * step + k)
            reward, info = asyncio.run(score(traj, {"qid": qid}))
            samples.append(ScoredTrajectory(traj, reward, info))
        trainer.train_step(
            [Group(qid=qid, question="q", answers=["x"], samples=samples, submit_version=step)]
        )
    assert trainer.version == 5
    assert p_target() > before + 0.1  # the rewarded token became likelier
