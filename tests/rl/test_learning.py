"""The learning test: a synchronous generate -> score -> Trainer.train_step loop must raise the reward, and the
same loop must NOT when the policy-gradient sign is flipped or the advantages are zeroed.

Task: after a random prompt, reward 1 when the sampled completion contains the target token. A separate sampler
model receives the trainer's weights each step (as rollout engines do via get_weights) and records behaviour
logprobs as log_softmax(logits / T)[token], the engines' definition.
"""

from __future__ import annotations

import pytest
import torch

from asearcher.agent.trajectory import LLMCall, Trajectory
from asearcher.config import RLConfig
from asearcher.rl.trainers.torch_backend import TorchTrainer
from asearcher.rl.algo.types import Group, ScoredTrajectory
from tests.rl.support import make_tiny_model

TARGET = 7
PROMPT_LEN, GEN_LEN = 4, 4
QUESTIONS, G = 16, 8
STEPS = 40
WINDOW = 10
T = 1.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("rl_learning") / "tiny", hidden=32, seed=1)


@torch.no_grad()
def sample(model, prompts: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling at temperature T; returns (tokens [B, GEN_LEN], behaviour logprobs [B, GEN_LEN])."""
    ids = prompts
    toks, lps = [], []
    for _ in range(GEN_LEN):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1, :].float() / T
        logp = torch.log_softmax(logits, -1)
        nxt = torch.multinomial(logp.exp(), 1, generator=gen)
        toks.append(nxt)
        lps.append(logp.gather(-1, nxt))
        ids = torch.cat([ids, nxt], 1)
    return torch.cat(toks, 1), torch.cat(lps, 1)


def run_loop(model_dir, *, advantage: str = "areal", multiplier: float = 1.0, seed: int = 0) -> list[float]:
    from transformers import AutoModelForCausalLM

    cfg = RLConfig(
        advantage=advantage,
        temperature=T,
        optim={"lr": 3e-3, "weight_decay": 0.0},
        max_tokens_per_mb=4096,
    )
    trainer = TorchTrainer(str(model_dir), cfg, seed=seed)
    trainer.advantage_multiplier = multiplier  # test-only: -1 flips the policy gradient, 0 removes it
    sampler = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(STEPS):
        sampler.load_state_dict(trainer.get_weights())
        prompts = torch.randint(8, 48, (QUESTIONS, PROMPT_LEN), generator=gen).repeat_interleave(G, 0)
        toks, lps = sample(sampler, prompts, gen)
        groups = []
        for q in range(QUESTIONS):
            samples = []
            for i in range(q * G, (q + 1) * G):
                out = toks[i].tolist()
                t = Trajectory(
                    qid=f"s{step}q{q}", question="", answers=[], agent="test", prompt_hash="", sample_idx=i
                )
                t.events = [
                    LLMCall(
                        input_ids=prompts[i].tolist(),
                        output_ids=out,
                        output_logprobs=lps[i].tolist(),
                        output_versions=[trainer.version] * GEN_LEN,
                        finish_reason="length",
                    )
                ]
                samples.append(ScoredTrajectory(t, float(TARGET in out)))
            groups.append(
                Group(qid=f"q{q}", question="", answers=[], samples=samples, submit_version=trainer.version)
            )
        curve.append(sum(s.reward for g in groups for s in g.samples) / (QUESTIONS * G))
        trainer.train_step(groups)
    return curve


def _start_end(curve):
    return sum(curve[:WINDOW]) / WINDOW, sum(curve[-WINDOW:]) / WINDOW


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["areal", "grpo"])
def test_reward_rises_and_fails_without_a_correct_gradient(model_dir, advantage):
    start, end = _start_end(run_loop(model_dir, advantage=advantage))
    assert end > start + 0.3, (start, end)
    # The same loop with the gradient sign flipped or the advantages zeroed must not learn.
    for mult in (-1.0, 0.0):
        s, e = _start_end(run_loop(model_dir, advantage=advantage, multiplier=mult))
        assert e < s + 0.1, (mult, s, e)
