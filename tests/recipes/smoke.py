"""Doubles for the paper-recipe smoke test: a scripted search policy in place of the LLM, and a judge that knows the
gold answers. Everything else (agents, tools, retrieval server, rewards, trainer, controller, eval runner) is real.

PolicyEngine answers like a patient search agent would: it searches (a different query each act) until the recipe's
answer rule lets an answer count, takes a note on every page or result block it is asked to read, then answers;
sample 0 of each question answers the gold answer and the other samples a wrong one, so every group has a reward
spread (dynamic filtering would drop a group of equal rewards). It records every request, so the test can check
the generation budget each call got.
"""

from __future__ import annotations

import re
from typing import Any

from asearcher.eval.judge import CORRECT, INCORRECT, JudgeResult
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine
from asearcher.rl.system.rollout import DefaultRolloutFactory

# question text -> gold answer, for the questions the smoke test trains on (shared with test_paper_recipes)
GOLD: dict[str, str] = {
    "Who wrote the play Hamlet?": "William Shakespeare",
    "What is the capital city of France?": "Paris",
}


def searches_before_answer(agent_cfg: Any) -> int:
    """Acts the policy spends searching: enough for the recipe's rule to accept an answer, and at least five
    (so every trajectory is long: a search and a read per act). Search-R1 (no read turns) searches until its last
    turn; the direct agent has no tools and answers at once."""
    if agent_cfg.kind == "direct":
        return 0
    if agent_cfg.kind == "search-r1":
        return agent_cfg.max_turns - 1
    need = agent_cfg.min_searches
    if agent_cfg.kind == "asearcher-reasoning" and agent_cfg.answer_policy == "answer_phase":
        need = max(need, agent_cfg.answer_phase_docs)
        if agent_cfg.force_answer_turns is not None:
            need = min(need, agent_cfg.force_answer_turns)
    return max(need, 5)


class PolicyEngine(InferenceEngine):
    def __init__(self, tokenizer: Any, agent_cfg: Any):
        self.tokenizer = tokenizer
        self.kind = agent_cfg.kind
        self.n_search = searches_before_answer(agent_cfg)
        self.searches: dict[str, int] = {}
        self.requests: list[tuple[str, int, int]] = []  # (rid, prompt tokens, max_new_tokens)
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    async def update_weights(self, state_dict: Any, version: int) -> None:
        self._version = version

    def _question(self, prompt: str) -> str | None:
        return next((q for q in GOLD if q in prompt), None)

    def _output(self, rid: str, prompt: str, stop: list[str]) -> str:
        reading = (
            stop == ["</think>"]  # the base agent's read turn
            or "Your latest search returned" in prompt
            or "You opened a web page" in prompt
        )
        if reading:
            return (
                "<thought>Noted what the results say.</thought>"
                if self.kind != "asearcher"
                else "Noted. </think>"
            )
        n = self.searches.get(rid, 0)
        q = self._question(prompt) or "the question"
        if n < self.n_search and "research on the question below is over" not in prompt:
            self.searches[rid] = n + 1
            query = f"{q} {n}"
            if self.kind == "asearcher":
                return f"I should search. </think>\n<search> {query} </search>"
            if self.kind == "search-r1":
                return f"<think>search</think>\n<search> {query} </search>"
            return f"<thought>Search more.</thought>\n<search> {query} </search>"
        right = rid.endswith("#0")
        answer = GOLD.get(self._question(prompt) or "", "unknown") if right else "Nobody in particular"
        if self.kind == "asearcher":
            return f"Done. </think>\n<answer> {answer} </answer>"
        return f"<thought>Settled.</thought>\n<answer> {answer} </answer>"

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        prompt = self.tokenizer.decode(request.input_ids)
        budget = request.sampling.max_new_tokens
        self.requests.append((request.rid or "", len(request.input_ids), budget))
        text = self._output(request.rid or "", prompt, list(request.sampling.stop))
        full = self.tokenizer.encode(text, add_special_tokens=False)
        ids = full[:budget]  # a real engine stops at the budget too
        return GenerationResult(
            output_ids=ids,
            output_logprobs=[-1.0] * len(ids),
            output_versions=[self._version] * len(ids),
            finish_reason="length" if len(full) > budget else "stop",
            text=self.tokenizer.decode(ids),
        )

    async def aclose(self) -> None:
        return None


class GoldJudge:
    """An LLM-judge double: Correct iff the prediction names the gold answer."""

    async def judge(self, question: str, answers: list[str], prediction: str | None, seed: int | None = None):
        norm = lambda s: re.sub(r"\W+", " ", s or "").strip().lower()  # noqa: E731
        ok = prediction is not None and any(norm(a) and norm(a) in norm(prediction) for a in answers)
        return JudgeResult(1.0 if ok else 0.0, CORRECT if ok else INCORRECT, "ok", 1, parser="double")

    def describe(self) -> dict[str, Any]:
        return {"kind": "double", "prompt": "none"}

    async def aclose(self) -> None:
        return None


class SmokeRolloutFactory(DefaultRolloutFactory):
    """The real rollout stack of `asearcher train` with the policy double as the engine and the gold judge."""

    def __init__(self, cfg: Any, model_dir: str, retrieval_url: str | None):
        super().__init__(cfg.engine, cfg.agent, cfg.rl, retrieval_url, judge_cfg=cfg.eval.judge)
        self.model_dir = model_dir

    def make_engine(self) -> InferenceEngine:
        from transformers import AutoTokenizer

        return PolicyEngine(AutoTokenizer.from_pretrained(self.model_dir), self.agent_cfg)

    def make_judge(self) -> Any:
        return GoldJudge()
