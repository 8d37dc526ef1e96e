"""SIMULATED RL workload: a named benchmark/test double of the rollout stack and the trainer.

Used by `benchmarks/async_vs_sync.py --mode simulated` and by the RL system tests (tests/rl/doubles.py re-exports
it). Nothing here is a model: the policy is a tiny [V, V] logits table, so the real system around it (Ray workers,
controller, staleness control, weight sync, interruptible generation) can be exercised in seconds.

- TableEngine: an InferenceEngine whose policy is the logits table (row = the prompt's first token). It samples token
  by token with a per-request seeded generator, sleeps `token_delay_s` per token (simulated decode time), and swaps
  weights between tokens: interruptible, with per-token versions.
- ScriptedAgent: a multi-turn agent (engine call + search per turn) whose turn count is drawn from a configurable
  (optionally long-tailed, `draw_turns`) distribution seeded by the trajectory's rng.
- SleepTools: a ToolBackend with simulated latency and canned results.
- TableTrainer: the Trainer API (train_step/get_weights/save/load/save_hf) doing a real torch policy-gradient step on
  the table (group-centred rewards, capped behaviour importance weight as in decoupled PPO), with optional simulated
  compute time.
- SimFactory: the picklable rollout factory (build(worker_index) -> RolloutComponents) of the three above.
Reward (`score`): 1 if the trajectory's last generated token equals the question's target token (`target_token`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from asearcher.agent.base import Agent
from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.rl.system.rollout import RolloutComponents
from asearcher.tools.base import SearchHit, ToolBackend
from asearcher.tools.latency import paper_like_turns

V = 6  # vocabulary of the table policy


def target_token(qid: str, vocab: int = V) -> int:
    return int(hashlib.sha256(qid.encode()).hexdigest(), 16) % (vocab - 1) + 1


class TableEngine(InferenceEngine):
    tokenizer = None

    def __init__(self, vocab: int = V, token_delay_s: float = 0.0):
        self.table = torch.zeros(vocab, vocab)
        self._version = 0
        self.token_delay_s = token_delay_s

    @property
    def version(self) -> int:
        return self._version

    async def update_weights(self, state_dict: dict[str, Any] | str, version: int) -> None:
        if isinstance(state_dict, str):
            state_dict = torch.load(Path(state_dict) / "policy.pt")
        self.table = state_dict["logits"].detach().clone().float()
        self._version = version

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        sp = request.sampling
        gen = torch.Generator().manual_seed(sp.seed if sp.seed is not None else 0)
        ctx = request.input_ids[0] % self.table.shape[0]
        out, lps, vers = [], [], []
        t0 = time.perf_counter()
        for _ in range(sp.max_new_tokens):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)  # weights may change here: interruptible decoding
            logp = torch.log_softmax(self.table[ctx] / max(sp.temperature, 1e-6), dim=-1)
            tok = int(torch.multinomial(logp.exp(), 1, generator=gen))
            out.append(tok)
            lps.append(float(logp[tok]))
            vers.append(self._version)
        return GenerationResult(out, lps, vers, "length", latency_s=time.perf_counter() - t0)


def draw_turns(rng: random.Random, spec: dict[str, Any]) -> int:
    """Turn count: fixed, or long-tailed ('tail'): mostly a few turns, with probability p_long a 40+ turn run."""
    if spec.get("kind", "fixed") == "fixed":
        return int(spec.get("turns", 2))
    return paper_like_turns(
        rng,
        spec.get("p_long", 0.05),
        spec.get("long_min", 40),
        spec.get("alpha", 2.0),
        spec.get("short_mean", 2.0),
    )


class ScriptedAgent(Agent):
    name = "scripted"
    prompt_hash = "scripted-v1"

    def __init__(self, turns: dict[str, Any], tokens_per_call: int = 4, vocab: int = V):
        self.turns = turns
        self.tokens_per_call = tokens_per_call
        self.vocab = vocab

    async def run(
        self, *, qid, question, answers, engine, tools, sampling, sample_idx=0, rng=None
    ) -> Trajectory:
        rng = rng or random.Random(0)
        traj = Trajectory(
            qid=qid,
            question=question,
            answers=list(answers),
            agent=self.name,
            prompt_hash=self.prompt_hash,
            sample_idx=sample_idx,
            seed=sampling.seed,
        )
        n_turns = draw_turns(rng, self.turns)
        ids = [target_token(qid, self.vocab)]
        for turn in range(n_turns):
            sp = SamplingParams(
                max_new_tokens=self.tokens_per_call,
                temperature=sampling.temperature,
                seed=rng.randrange(2**31),
            )
            t0 = time.time()
            res = await engine.agenerate(GenerationRequest(list(ids), sp, rid=f"{qid}:{sample_idx}"))
            traj.events.append(
                LLMCall(
                    list(ids),
                    res.output_ids,
                    res.output_logprobs,
                    res.output_versions,
                    res.finish_reason,
                    t_start=t0,
                    t_end=time.time(),
                )
            )
            ids = ids + res.output_ids
            if turn < n_turns - 1:
                t0 = time.time()
                hits = await tools.search(f"q{turn}", 1)
                traj.events.append(
                    ToolCall(
                        "search", f"q{turn}", True, [h.contents for h in hits], t_start=t0, t_end=time.time()
                    )
                )
        traj.prediction = str(ids[-1])
        traj.finish = "answer"
        return traj


class SleepTools(ToolBackend):
    name = "sleep-tools"

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return [SearchHit(url=f"sim://{query}", contents=f'"{query}"\nsimulated passage')]

    async def access(self, url: str) -> str | None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return "simulated page"


async def score(traj: Trajectory, q: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    ok = traj.prediction == str(target_token(q["qid"]))
    return (1.0 if ok else 0.0), {"correct": ok}


class SimFactory:
    """RolloutFactory of the doubles (picklable, so Ray workers build their own copies)."""

    def __init__(
        self,
        turns: dict[str, Any] | None = None,
        token_delay_s: float = 0.0,
        tool_latency_s: float = 0.0,
        tokens_per_call: int = 4,
    ):
        self.turns = turns or {"kind": "fixed", "turns": 2}
        self.token_delay_s = token_delay_s
        self.tool_latency_s = tool_latency_s
        self.tokens_per_call = tokens_per_call

    def build(self, worker_index: int) -> RolloutComponents:
        return RolloutComponents(
            TableEngine(token_delay_s=self.token_delay_s),
            ScriptedAgent(self.turns, self.tokens_per_call),
            SleepTools(self.tool_latency_s),
            score,
            max_new_tokens=self.tokens_per_call,
        )


class TableTrainer:
    """Trainer API on the table policy: one Adam policy-gradient step per batch (group-centred rewards)."""

    def __init__(
        self,
        model_path: str | None = None,
        cfg: Any = None,
        *,
        device: str = "cpu",
        seed: int = 0,
        lr: float = 0.5,
        train_delay_s: float = 0.0,
    ):
        torch.manual_seed(seed)
        self.logits = torch.zeros(V, V, requires_grad=True)
        self.opt = torch.optim.Adam([self.logits], lr=lr)
        self.version = 0
        self.train_delay_s = train_delay_s
        self.imp_weight_cap = 5.0

    def train_step(self, groups: list) -> dict[str, float]:
        t0 = time.perf_counter()
        terms, n_tok = [], 0
        for g in groups:
            mean = sum(g.rewards) / len(g.rewards)
            for s in g.samples:
                adv = s.reward - mean
                for call in s.trajectory.llm_calls:
                    logp = torch.log_softmax(self.logits[call.input_ids[0] % V], dim=-1)[call.output_ids]
                    # decoupled-PPO-style correction for stale samples: behaviour importance weight, capped
                    w = torch.exp(logp.detach() - torch.tensor(call.output_logprobs))
                    w = torch.where(w > self.imp_weight_cap, torch.zeros_like(w), w)
                    terms.append(-adv * (w * logp).sum())
                    n_tok += len(call.output_ids)
        loss = torch.stack(terms).sum() / max(n_tok, 1)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.version += 1
        if self.train_delay_s:  # simulated trainer compute (benchmark only)
            time.sleep(max(0.0, self.train_delay_s - (time.perf_counter() - t0)))
        return {"loss": float(loss.detach()), "n_tokens": float(n_tok)}

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {"logits": self.logits.detach().clone()}

    def save(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(
            {"logits": self.logits.detach(), "opt": self.opt.state_dict(), "version": self.version},
            Path(path) / "trainer.pt",
        )

    def load(self, path: str) -> None:
        st = torch.load(Path(path) / "trainer.pt")
        with torch.no_grad():
            self.logits.copy_(st["logits"])
        self.opt.load_state_dict(st["opt"])
        self.version = int(st["version"])

    def save_hf(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.get_weights(), Path(path) / "policy.pt")
        (Path(path) / "config.json").write_text(json.dumps({"model_type": "table-policy", "vocab": V}))
