"""The Search-R1 baseline agent (paper-notes §2.4).

One growing conversation: the question prompt (a user message through the chat template when the tokenizer
has one), then the model's turns with <search> q </search> (or <|begin_of_query|> q <|end_of_query|>) and
<answer> a </answer>. Search results are appended as a numbered list inside <information>. The history only
grows, so every call's input ids extend the previous call's input + output ids (token-in, token-out).
`max_turns` defaults to 10 for this agent unless the config sets it.
"""

from __future__ import annotations

import logging
import random

from asearcher.agent.common import BaseSearchAgent, actions_hint
from asearcher.agent.parsing import SEARCH_R1_TAGS, parse_action
from asearcher.agent.templates import RoleSpec
from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend

log = logging.getLogger(__name__)

STOP = ["</search>", "</answer>", "<|end_of_query|>", "<|im_end|>", "<|endoftext|>"]
DEFAULT_MAX_TURNS = 10


def format_numbered(hits: list[SearchHit] | None, doc_max_chars: int) -> str:
    if hits is None:
        body = "The search failed."
    elif not hits:
        body = "No search results were found."
    else:
        body = "\n\n".join(f"{i}. {h.contents[:doc_max_chars]}" for i, h in enumerate(hits, start=1))
    return f"\n\n<information>{body}\n</information>\n\n"


class SearchR1Agent(BaseSearchAgent):
    name = "search-r1"

    def role_specs(self) -> dict[str, RoleSpec]:
        return {
            "prompt": RoleSpec("search_r1.txt", frozenset({"question"}), frozenset({"question"})),
            "invalid": RoleSpec("search_r1_invalid.txt", frozenset({"reason", "actions"})),
        }

    @property
    def max_turns(self) -> int:
        return self.cfg.max_turns if "max_turns" in self.cfg.model_fields_set else DEFAULT_MAX_TURNS

    async def rollout(
        self,
        traj: Trajectory,
        question: str,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        rng: random.Random,
    ) -> Trajectory:
        traj.meta.update(max_turns=self.max_turns, invalid_actions=0)
        return await self._loop(traj, question, engine, tools, sampling)

    async def _loop(self, traj, question, engine, tools, sampling) -> Trajectory:
        history = self.chat_prompt_ids(self.templates["prompt"].render(question=question).strip())
        while len(traj.llm_calls) < self.max_turns:
            if not self.fits(history):
                return self.finish(traj, "context")
            call = await self.generate(traj, engine, history, sampling, stop=STOP, purpose="act")
            history = history + call.output_ids
            action = parse_action(call.output_text, allowed=("search", "answer"), tags=SEARCH_R1_TAGS)
            if action.kind == "answer":
                return self.finish(traj, "answer", action.argument)
            if action.kind == "search":
                hits = await self.search(traj, tools, action.argument)
                history = history + self.encode(format_numbered(hits, self.cfg.doc_max_chars))
            elif self.ended_by_eos(call, STOP):
                return self.finish(traj, "eos")
            else:
                traj.meta["invalid_actions"] += 1
                fb = self.templates["invalid"].render(
                    reason=action.reason, actions=actions_hint(["search", "answer"])
                )
                history = history + self.encode("\n" + fb.strip() + "\n")
        return self.finish(traj, "max_turns")
