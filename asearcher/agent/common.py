"""Machinery shared by the agents: recorded LLM and tool calls, token helpers, observation formatting."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from typing import Any

from asearcher.agent.base import Agent
from asearcher.agent.templates import PromptTemplate, RoleSpec, combine_hashes, load_role_templates
from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.config.agent import AgentConfig
from asearcher.llm.engine import GenerationRequest, InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend, ToolError

log = logging.getLogger(__name__)

ACTION_HINTS = {
    "search": "a non-empty query inside <search> </search>",
    "access": "a URL inside <access> </access>",
    "answer": "the final answer inside <answer> </answer>",
}


def actions_hint(allowed: list[str]) -> str:
    parts = [ACTION_HINTS[a] for a in allowed]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def page_chunks(page: str, max_chars: int, chunk_chars: int) -> list[str]:
    page = page[:max_chars]
    return [page[i : i + chunk_chars] for i in range(0, len(page), chunk_chars)]


class GenerationAborted(RuntimeError):
    """The engine aborted a request (e.g. shutting down); the trajectory ends with finish="error"."""


class BaseSearchAgent(Agent):
    """Template loading, recorded calls and the per-trajectory bookkeeping every agent needs."""

    name = "base"
    #: role -> RoleSpec; the first role is the one `AgentConfig.template` overrides
    roles: dict[str, RoleSpec] = {}

    def __init__(self, cfg: AgentConfig, tokenizer: Any):
        self.cfg = cfg
        self.tokenizer = tokenizer
        overrides = dict(cfg.templates)
        specs = self.role_specs()
        if cfg.template is not None:
            first = next(iter(specs))
            overrides.setdefault(first, cfg.template)
        self.templates: dict[str, PromptTemplate] = load_role_templates(specs, overrides, agent=self.name)
        self.prompt_hash = combine_hashes(self.templates)
        eos = [getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None)]
        self.end_ids: set[int] = {i for i in eos if isinstance(i, int)}

    # ---- hooks -------------------------------------------------------------------------------------
    def role_specs(self) -> dict[str, RoleSpec]:
        return dict(self.roles)

    @property
    def max_turns(self) -> int:
        return self.cfg.max_turns

    # ---- tokens ------------------------------------------------------------------------------------
    def encode(self, text: str, *, first: bool = False) -> list[int]:
        """Token ids of text. Only the very first piece of a prompt gets the tokenizer's special prefix (BOS)."""
        return list(self.tokenizer.encode(text, add_special_tokens=first))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def chat_prompt_ids(self, user_text: str) -> list[int]:
        """One user message through the tokenizer's chat template (plain text when it has none)."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
            )
            return self.encode(text)
        return self.encode(user_text, first=True)

    # ---- trajectory --------------------------------------------------------------------------------
    def new_trajectory(
        self, qid: str, question: str, answers: list[str], sample_idx: int, sampling: SamplingParams
    ) -> Trajectory:
        return Trajectory(
            qid=qid,
            question=question,
            answers=list(answers),
            agent=self.name,
            prompt_hash=self.prompt_hash,
            sample_idx=sample_idx,
            seed=sampling.seed,
            meta={
                "templates": {r: {"path": str(t.path), "sha256": t.sha256} for r, t in self.templates.items()}
            },
        )

    @staticmethod
    def make_rng(
        rng: random.Random | None, sampling: SamplingParams, qid: str, sample_idx: int
    ) -> random.Random:
        """The caller's rng, else one derived from (seed, qid, sample_idx): reproducible and different per
        question and sample."""
        if rng is not None:
            return rng
        return random.Random(f"{sampling.seed}:{qid}:{sample_idx}")

    async def run(
        self,
        *,
        qid: str,
        question: str,
        answers: list[str],
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        sample_idx: int = 0,
        rng: random.Random | None = None,
    ) -> Trajectory:
        traj = self.new_trajectory(qid, question, answers, sample_idx, sampling)
        rng = self.make_rng(rng, sampling, qid, sample_idx)
        try:
            return await self.rollout(traj, question, engine, tools, sampling, rng)
        except Exception as e:  # engine failure: recorded, the runner decides (model output never raises)
            log.exception("trajectory %s#%d failed", qid, sample_idx)
            traj.error = f"{type(e).__name__}: {e}"
            return self.finish(traj, "error")

    async def rollout(
        self,
        traj: Trajectory,
        question: str,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        rng: random.Random,
    ) -> Trajectory:
        """The agent's own loop, from a fresh trajectory to its finish."""
        raise NotImplementedError

    #: how upstream sizes one call's generation for this agent (agent.call_budget: auto)
    upstream_call_budget = "fixed"

    @property
    def budget_mode(self) -> str:
        return self.upstream_call_budget if self.cfg.call_budget == "auto" else self.cfg.call_budget

    def call_budget(self, input_ids: list[int]) -> int:
        """Tokens the next call after `input_ids` may generate; 0 = it does not fit (the trajectory ends)."""
        room = self.cfg.max_context_tokens - len(input_ids)
        if self.budget_mode == "fixed":
            return self.cfg.max_new_tokens if room >= self.cfg.max_new_tokens else 0
        budget = min(self.cfg.max_new_tokens, room)
        return budget if budget >= min(self.cfg.min_call_tokens, self.cfg.max_new_tokens) else 0

    def fits(self, input_ids: list[int]) -> bool:
        return self.call_budget(input_ids) > 0

    async def generate(
        self,
        traj: Trajectory,
        engine: InferenceEngine,
        input_ids: list[int],
        sampling: SamplingParams,
        *,
        stop: list[str],
        purpose: str,
    ) -> LLMCall:
        """One recorded LLM call. The exact ids sent to the engine are what the record keeps."""
        n = len(traj.llm_calls)
        params = dataclasses.replace(
            sampling,
            # callers check fits() first; a direct call still never asks for more than the context leaves
            max_new_tokens=self.call_budget(input_ids)
            or min(self.cfg.max_new_tokens, self.cfg.max_context_tokens),
            stop=list(stop),
            stop_token_ids=sorted(set(sampling.stop_token_ids) | self.end_ids),
            # distinct but reproducible seed per call of a seeded trajectory
            seed=None if sampling.seed is None else sampling.seed * 1009 + n,
        )
        ids = list(input_ids)
        t0 = time.time()
        res = await engine.agenerate(
            GenerationRequest(input_ids=ids, sampling=params, rid=f"{traj.qid}#{traj.sample_idx}")
        )
        t1 = time.time()
        text = res.text if res.text is not None else self.decode(res.output_ids)
        call = LLMCall(
            input_ids=ids,
            output_ids=list(res.output_ids),
            output_logprobs=list(res.output_logprobs),
            output_versions=list(res.output_versions),
            finish_reason=res.finish_reason,
            purpose=purpose,
            output_text=text,
            t_start=t0,
            t_end=t1,
        )
        self.record_event(traj, call)
        if res.finish_reason == "abort":
            raise GenerationAborted(f"the engine aborted call {n} of this trajectory")
        return call

    def ended_by_eos(self, call: LLMCall, stop: list[str]) -> bool:
        """The model ended its output (eos/pad), as opposed to hitting a stop string or the token limit.

        Engines keep the eos id in output_ids; an engine that drops it still reports "stop" without the text
        ending in a stop string.
        """
        if call.finish_reason != "stop":
            return False
        if call.output_ids and call.output_ids[-1] in self.end_ids:
            return True
        return not any(call.output_text.endswith(s) for s in stop)

    def record_event(self, traj: Trajectory, event: LLMCall | ToolCall) -> None:
        """Append an event to the trajectory and tell the on_event observer, if any (its errors are logged only)."""
        traj.events.append(event)
        if self.on_event is not None:
            try:
                self.on_event(traj, event)
            except Exception:
                log.exception("on_event observer failed (the trajectory goes on)")

    async def search(self, traj: Trajectory, tools: ToolBackend, query: str) -> list[SearchHit] | None:
        """Recorded search; None when the tool failed (the failure is recorded, never raised)."""
        t0 = time.time()
        try:
            hits = await tools.search(query, self.cfg.topk)
        except ToolError as e:
            self.record_event(
                traj, ToolCall("search", query, ok=False, error=str(e), t_start=t0, t_end=time.time())
            )
            return None
        hits = list(hits)[: self.cfg.topk]
        self.record_event(
            traj,
            ToolCall(
                "search",
                query,
                ok=True,
                t_start=t0,
                t_end=time.time(),
                result=[{"url": h.url, "contents": h.contents, "id": h.id, "score": h.score} for h in hits],
            ),
        )
        return hits

    async def access(self, traj: Trajectory, tools: ToolBackend, url: str) -> tuple[bool, str | None]:
        """Recorded page access: (ok, page or None)."""
        t0 = time.time()
        try:
            page = await tools.access(url)
        except ToolError as e:
            self.record_event(
                traj, ToolCall("access", url, ok=False, error=str(e), t_start=t0, t_end=time.time())
            )
            return False, None
        self.record_event(traj, ToolCall("access", url, ok=True, result=page, t_start=t0, t_end=time.time()))
        return True, page

    @staticmethod
    def finish(traj: Trajectory, reason: str, prediction: str | None = None) -> Trajectory:
        traj.finish = reason
        if prediction is not None:
            traj.prediction = prediction
        return traj
