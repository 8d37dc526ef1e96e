"""`asearcher train` end to end on the real stack: tiny Qwen2 model in TransformersEngine rollout actors, the
ASearcher agent, LocalTools against a real retrieval server (BM25 over the mirror corpus), the paper's reward,
and the torch trainer. Small: 2 steps of 2 groups x 2 trajectories, 2 turns of 16 tokens."""

from __future__ import annotations

import json

import torch

from asearcher.cli import main
from tests.test_rl_system import ray_local  # noqa: F401  (module-scoped local Ray)


def test_train_cli_real_stack(ray_local, tiny_model_dir, retrieval_server, tmp_path):  # noqa: F811
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"qid": f"q{i}", "question": q, "answer": [a]}) + "\n" for i, (q, a) in
                             enumerate([("Who wrote Hamlet?", "Shakespeare"), ("Capital of France?", "Paris"),
                                        ("Largest planet?", "Jupiter")])))
    out = tmp_path / "run"
    rc = main(["train", "--model", str(tiny_model_dir), "--train", str(train), "--output", str(out),
               "--retrieval-url", retrieval_server.url, "--no-progress",
               "rl.steps=2", "rl.batch_size=2", "rl.group_size=2", "rl.max_head_offpolicyness=1",
               "rl.rollout_workers=1", "rl.dynamic_filtering=false", "rl.checkpoint_every=1",
               "agent.max_turns=2", "agent.max_new_tokens=16", "engine.device=cpu", "engine.max_batch_size=8"])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["n_trajectories"] == 4 and r["tokens_per_traj_max"] > 0 for r in rows)
    assert all(sum(r["token_staleness_hist"].values()) > 0 for r in rows)
    assert (out / "final" / "config.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_1", "step_2"]
    # the trainer really changed the weights it saved
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
