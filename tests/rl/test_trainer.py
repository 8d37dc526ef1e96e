"""TorchTrainer on a tiny random Qwen2: API contract, exact micro-batching, deterministic resume, HF export."""

from __future__ import annotations

import pytest
import torch

from asearcher.config import RLConfig
from asearcher.rl.trainers import make_trainer
from asearcher.rl.trainers.torch_backend import TorchTrainer
from asearcher.rl.algo.logprobs import pad_batch, token_logprobs
from tests.rl.support import make_tiny_model, random_groups


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("rl_trainer") / "tiny")


def _cfg(**kw):
    base = dict(optim={"lr": 1e-2, "weight_decay": 0.0}, max_tokens_per_mb=4096)
    base.update(kw)
    return RLConfig(**base)


def _diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_train_step_contract(model_dir):
    tr = make_trainer(str(model_dir), _cfg())
    assert isinstance(tr, TorchTrainer) and tr.version == 0
    w0 = tr.get_weights()
    m = tr.train_step(random_groups(2, 3))
    assert tr.version == 1
    for k in (
        "loss",
        "grad_norm",
        "n_seqs",
        "n_tokens",
        "clip_frac",
        "behav_masked_frac",
        "entropy",
        "train_s",
        "staleness_mean",
        "staleness_max",
    ):
        assert k in m, k
    assert m["n_seqs"] == 6 and m["n_tokens"] == 6 * 7 and m["grad_norm"] > 0
    w1 = tr.get_weights()
    assert _diff(w0, w1) > 0
    assert all(v.device.type == "cpu" for v in w1.values())
    tr.train_step(random_groups(2, 3, seed=1))
    assert _diff(w1, tr.get_weights()) > 0  # get_weights returned a copy, not the live tensors
    assert _diff(w1, w1) == 0


def test_microbatching_is_exact(model_dir):
    groups = random_groups(2, 4)
    a = TorchTrainer(str(model_dir), _cfg(max_tokens_per_mb=10_000))
    b = TorchTrainer(str(model_dir), _cfg(max_tokens_per_mb=16))  # one sequence per micro-batch
    ma, mb = a.train_step(groups), b.train_step(groups)
    assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-5)
    assert ma["grad_norm"] == pytest.approx(mb["grad_norm"], rel=1e-4)
    # gradients (still on the parameters after the step) agree to float precision
    for (n, pa), (_, pb) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-7, rtol=1e-4), n


def test_proximal_recompute_and_behaviour_weights(model_dir):
    tr = TorchTrainer(str(model_dir), _cfg())
    groups = random_groups(1, 4)
    # record behaviour logprobs equal to the current policy's: every behaviour weight is exactly 1
    from asearcher.rl.algo.batching import build_sequences

    for st in groups[0].samples:
        for c in st.trajectory.llm_calls:
            with torch.no_grad():
                lp = token_logprobs(tr.model, *pad_batch([c.input_ids + c.output_ids]), tr.cfg.temperature)[
                    0
                ][0]
            c.output_logprobs = lp[len(c.input_ids) :].tolist()
    m = tr.train_step(groups)
    assert m["behav_weight_mean"] == pytest.approx(1.0, abs=1e-5) and m["behav_masked_frac"] == 0
    assert m["ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    # stale behaviour logprobs far below the current policy: all weights exceed the cap -> no gradient
    for st in groups[0].samples:
        for c in st.trajectory.llm_calls:
            c.output_logprobs = [-30.0] * len(c.output_ids)
    m = tr.train_step(groups)
    assert m["behav_masked_frac"] == 1.0 and m["grad_norm"] == 0.0
    assert build_sequences(groups, tr.cfg)[0]  # still packable


def test_zero_advantage_gives_zero_gradient_and_staleness_is_reported(model_dir):
    tr = TorchTrainer(str(model_dir), _cfg(advantage="grpo"))
    groups = random_groups(2, 3, version=0)
    for g in groups:
        for s in g.samples:
            s.reward = 0.5  # all equal: GRPO advantage 0
    m = tr.train_step(groups)
    assert m["grad_norm"] == 0.0
    m = tr.train_step(random_groups(1, 3, version=0))
    assert m["staleness_mean"] == 1.0 and m["staleness_max"] == 1.0  # tokens from v0, trainer at v1
    m = tr.train_step(random_groups(1, 2, version=-1))
    assert m["staleness_known_frac"] == 0.0  # engines that cannot tell (-1) are not counted


def test_save_load_resumes_bit_for_bit(model_dir, tmp_path):
    cfg = _cfg(optim={"lr": 1e-2, "weight_decay": 0.01, "warmup_steps": 3})
    g1, g2 = random_groups(2, 3, seed=5), random_groups(2, 3, seed=6)
    a = TorchTrainer(str(model_dir), cfg, seed=3)
    a.train_step(g1)
    a.save(tmp_path / "ck")
    a.save(tmp_path / "ck")  # overwriting an existing checkpoint is atomic and allowed
    ma = a.train_step(g2)
    b = TorchTrainer(str(model_dir), cfg, seed=3)
    b.load(tmp_path / "ck")
    assert b.version == 1
    mb = b.train_step(g2)
    assert ma["lr"] == mb["lr"] and ma["loss"] == pytest.approx(mb["loss"], rel=1e-6)
    assert _diff(a.get_weights(), b.get_weights()) == 0.0
    with pytest.raises(FileNotFoundError, match="not a trainer checkpoint"):
        b.load(tmp_path)


def test_save_hf_is_loadable(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tr = TorchTrainer(str(model_dir), _cfg())
    tr.train_step(random_groups(1, 2))
    tr.save_hf(tmp_path / "hf")
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.convert_tokens_to_ids("w5") == 5
    sd = m.state_dict()
    w = tr.get_weights()
    assert _diff({k: sd[k] for k in w}, w) == 0.0


def test_options_gradient_checkpointing_minibatches_kl(model_dir):
    g = random_groups(2, 2)
    tr = TorchTrainer(str(model_dir), _cfg(gradient_checkpointing=True, kl_coef=0.1))
    m = tr.train_step(g)
    assert m["grad_norm"] > 0 and m["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 0
    assert tr.train_step(g)["kl"] > 0
    # two minibatches = two optimizer steps in one train_step: the second already differs from the reference
    tr2 = TorchTrainer(str(model_dir), _cfg(ppo_minibatches=2, kl_coef=0.1))
    assert tr2.train_step(g)["kl"] > 0 and tr2.version == 1
    plain = TorchTrainer(str(model_dir), _cfg(use_decoupled_loss=False))
    assert plain.train_step(g)["n_tokens"] == 4 * 7
    with pytest.raises(ValueError, match="at least one group"):
        plain.train_step([])


def test_recomputed_logprobs_match_the_real_engine(model_dir):
    """The trainer's proximal logprobs equal the TransformersEngine's recorded behaviour logprobs (same
    weights, same temperature), and weights shipped with get_weights -> update_weights keep them equal."""
    import asyncio

    from asearcher.agent.trajectory import LLMCall, Trajectory
    from asearcher.llm.engine import GenerationRequest, SamplingParams
    from asearcher.llm.transformers_engine import TransformersEngine
    from asearcher.rl.algo.types import Group, ScoredTrajectory

    tr = TorchTrainer(str(model_dir), _cfg(temperature=0.7))
    tr.train_step(random_groups(1, 2))  # move the weights away from the checkpoint on disk

    async def gen():
        eng = TransformersEngine(str(model_dir), device="cpu", dtype="float32")
        try:
            await eng.update_weights(tr.get_weights(), tr.version)
            reqs = [
                GenerationRequest(
                    [5, 6, 7, 8], SamplingParams(max_new_tokens=6, temperature=0.7, seed=i), rid=f"r{i}"
                )
                for i in range(4)
            ]
            return await asyncio.gather(*(eng.agenerate(r) for r in reqs))
        finally:
            await eng.aclose()

    results = asyncio.run(gen())
    samples = []
    for i, res in enumerate(results):
        t = Trajectory(qid="q", question="", answers=[], agent="t", prompt_hash="", sample_idx=i)
        t.events = [LLMCall([5, 6, 7, 8], res.output_ids, res.output_logprobs, res.output_versions, "stop")]
        samples.append(ScoredTrajectory(t, float(i % 2)))
    assert all(v == tr.version for r in results for v in r.output_versions)
    m = tr.train_step([Group("q", "", [], samples, submit_version=tr.version)])
    assert m["behav_weight_mean"] == pytest.approx(1.0, abs=1e-4) and m["behav_masked_frac"] == 0.0
    assert m["staleness_mean"] == 0.0
