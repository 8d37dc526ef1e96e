"""DeepSpeed backend: same API and same numbers as the torch trainer.

The CPU smoke test (single process, ZeRO-1 over gloo, one Ray actor) runs when deepspeed is installed; the
ZeRO-3 test needs a CUDA GPU.
"""

from __future__ import annotations

import importlib.util

import pytest

from asearcher.config import RLConfig
from asearcher.rl.trainers.deepspeed_backend import deal_trajectories, ds_config
from asearcher.rl.algo.batching import build_sequences
from tests.rl.support import make_tiny_model, random_groups

needs_ds = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")


def test_deal_balances_whole_trajectories():
    seqs, _ = build_sequences(random_groups(3, 4), RLConfig())
    shares = deal_trajectories(seqs, 3)
    assert sorted(id(s) for sh in shares for s in sh) == sorted(map(id, seqs))
    for sh in shares:  # a trajectory never straddles ranks
        for s in sh:
            assert all(o in sh for o in seqs if o.traj_index == s.traj_index)
    loads = [sum(len(s.input_ids) for s in sh) for sh in shares]
    assert max(loads) - min(loads) <= max(len(s.input_ids) for s in seqs) * 2


def test_ds_config_follows_the_rl_config():
    c = ds_config(RLConfig(zero_stage=3, optim={"lr": 2e-6, "grad_clip": 0.5, "warmup_steps": 5}), cuda=True)
    assert c["zero_optimization"]["stage"] == 3 and c["gradient_clipping"] == 0.5
    assert c["optimizer"]["params"]["lr"] == 2e-6 and c["bf16"]["enabled"] is True
    assert c["scheduler"]["params"]["warmup_num_steps"] == 5
    assert "scheduler" not in ds_config(RLConfig(), cuda=False)
    # FusedAdam (a CUDA op DeepSpeed builds on first use) on GPUs; torch's AdamW on the CPU
    assert "torch_adam" not in c["optimizer"]["params"]
    assert ds_config(RLConfig(), cuda=False)["optimizer"]["params"]["torch_adam"] is True


def _compare_with_torch(tmp_path, cfg_kw, device="cpu"):
    from asearcher.rl.trainers import make_trainer
    from asearcher.rl.trainers.torch_backend import TorchTrainer

    model = make_tiny_model(tmp_path / "tiny")
    base = dict(optim={"lr": 1e-2, "weight_decay": 0.0})
    ds = make_trainer(str(model), RLConfig(backend="deepspeed", **base, **cfg_kw))
    try:
        ref = TorchTrainer(str(model), RLConfig(**base))
        g = random_groups(2, 3)
        m, mr = ds.train_step(g), ref.train_step(g)
        assert ds.version == 1
        assert m["loss"] == pytest.approx(mr["loss"], rel=1e-3, abs=1e-5)
        assert m["grad_norm"] == pytest.approx(mr["grad_norm"], rel=1e-2)
        w, wr = ds.get_weights(), ref.get_weights()
        tol = 1e-6 if device == "cpu" else 5e-2  # bf16 on GPU
        assert max(float((w[k] - wr[k]).abs().max()) for k in wr) < tol
        ds.save(tmp_path / "ck")
        ds.train_step(g)
        w2 = ds.get_weights()
        ds.load(tmp_path / "ck")
        assert ds.version == 1
        ds.train_step(g)
        assert max(float((ds.get_weights()[k] - w2[k]).abs().max()) for k in w2) == 0.0
        ds.save_hf(tmp_path / "hf")
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    finally:
        ds.close()


@pytest.mark.slow
@needs_ds
def test_deepspeed_cpu_zero1_matches_torch(tmp_path):
    _compare_with_torch(tmp_path, {"zero_stage": 1})


@pytest.mark.gpu
@needs_ds
def test_deepspeed_gpu_zero3_matches_torch(tmp_path):
    _compare_with_torch(tmp_path, {"zero_stage": 3, "trainer_gpus": 1}, device="cuda")
