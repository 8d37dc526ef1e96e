"""The direct-generation baseline (the "Direct" rows of paper Tables 2-4): the model answers from its own knowledge.

One LLM call, no tools: the question prompt (a user message through the chat template when the tokenizer has one,
as for Search-R1), generation until </answer>, eos or the call's budget, and the answer taken with the agents' tag
parser (the last complete <answer> pair of the output). An output without one has no prediction (finish "eos", or
"max_turns" when the budget ran out first). `max_turns` is always 1, whatever the config says.
"""

from __future__ import annotations

import random

from asearcher.agent.common import BaseSearchAgent
from asearcher.agent.parsing import extract_tag
from asearcher.agent.templates import RoleSpec
from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend, ToolError

STOP = ["</answer>"]


class NoTools(ToolBackend):
    """The tool backend of an agent that has none: evaluation needs no retrieval server or web keys for it, and
    any call is a ToolError (a direct agent never makes one)."""

    name = "none"

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        raise ToolError("this agent has no search tool")

    async def access(self, url: str) -> str | None:
        raise ToolError("this agent has no browser")


class DirectAgent(BaseSearchAgent):
    name = "direct"  # in asearcher.config.agent.TOOL_FREE_KINDS: evaluation gives it NoTools

    def role_specs(self) -> dict[str, RoleSpec]:
        return {"prompt": RoleSpec("direct.txt", frozenset({"question"}), frozenset({"question"}))}

    @property
    def max_turns(self) -> int:
        return 1

    async def rollout(
        self,
        traj: Trajectory,
        question: str,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        rng: random.Random,
    ) -> Trajectory:
        traj.meta.update(max_turns=self.max_turns)
        prompt = self.chat_prompt_ids(self.templates["prompt"].render(question=question).strip())
        if not self.fits(prompt):
            return self.finish(traj, "context")
        call = await self.generate(traj, engine, prompt, sampling, stop=STOP, purpose="answer")
        answer = extract_tag(call.output_text, "answer")
        if answer:
            return self.finish(traj, "answer", answer)
        return self.finish(traj, "max_turns" if call.finish_reason == "length" else "eos")
