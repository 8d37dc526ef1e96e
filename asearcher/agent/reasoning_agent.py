"""The prompt-based reasoning-model agent (paper §2.3, QwQ-32B style).

Every LLM call is ONE user message rendered through the tokenizer's chat template, with a prompt per job:
act (choose the next search/access/answer), read_page (take notes on one page chunk), read_search (take notes
on search results) and answer (the final answer). The model's hidden reasoning (<think>...</think>) is
discarded; the history holds its notes (<thought>), its tool calls and short stubs of what the tools returned,
and only its last `history_chars` characters are shown.

Policy (configurable, see docs/agents.md):
- answer_policy 'min_searches': an <answer> from an act counts only after `min_searches` successful searches
  (earlier ones are set aside and noted in the history);
- answer_policy 'answer_phase' (upstream): until `answer_phase_docs` search-result blocks were seen or
  `force_answer_turns` acts were made, the act prompt (role 'explore') offers no <answer>, and an answer given
  anyway is set aside; after that the act prompt offers it;
- after `force_answer_turns` acts, or when one turn is left, a final answer call is made; if it has no <answer>
  tag the answer is recovered from the text (parsing.fallback_answer);
- page_reading 'all_chunks' reads every chunk of an opened page before the next act, 'one_per_act' (upstream)
  reads the first at once and one more before each later act.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from datetime import date

from asearcher.agent.common import BaseSearchAgent, actions_hint, page_chunks
from asearcher.agent.parsing import extract_tag, fallback_answer, parse_action, strip_think
from asearcher.agent.templates import RoleSpec
from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend

log = logging.getLogger(__name__)

STOP = ["<|im_end|>", "<|endoftext|>"]
_HISTORY_ITEM = {"question", "history", "today"}


@dataclass
class Job:
    kind: str  # "page" | "search"
    content: str  # what the read call sees
    stub: str  # what the history keeps


def format_hits(hits: list[SearchHit], doc_max_chars: int) -> str:
    return "\n\n".join(f"[Doc {i}]({h.url}):\n{h.contents[:doc_max_chars]}" for i, h in enumerate(hits, 1))


class ReasoningAgent(BaseSearchAgent):
    name = "asearcher-reasoning"
    upstream_call_budget = "context"  # upstream: max_new_tokens = 31000 - prompt length

    def role_specs(self) -> dict[str, RoleSpec]:
        suffix = "" if self.cfg.allow_access else "_search_only"
        return {
            "act": RoleSpec(
                f"reasoning_act{suffix}.txt", frozenset(_HISTORY_ITEM), frozenset({"question", "history"})
            ),
            # before the answer phase (answer_policy: answer_phase): the same step without the <answer> action
            "explore": RoleSpec(
                f"reasoning_explore{suffix}.txt", frozenset(_HISTORY_ITEM), frozenset({"question", "history"})
            ),
            "read_page": RoleSpec(
                "reasoning_read_page.txt", frozenset(_HISTORY_ITEM | {"content"}), frozenset({"content"})
            ),
            "read_search": RoleSpec(
                "reasoning_read_search.txt", frozenset(_HISTORY_ITEM | {"content"}), frozenset({"content"})
            ),
            "answer": RoleSpec("reasoning_answer.txt", frozenset(_HISTORY_ITEM), frozenset({"question"})),
            "invalid": RoleSpec("reasoning_invalid.txt", frozenset({"reason", "actions"})),
        }

    @property
    def allowed(self) -> list[str]:
        return ["search", "access", "answer"] if self.cfg.allow_access else ["search", "answer"]

    async def rollout(
        self,
        traj: Trajectory,
        question: str,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        rng: random.Random,
    ) -> Trajectory:
        traj.meta.update(
            chat_template=bool(getattr(self.tokenizer, "chat_template", None)),
            discarded_answers=[],
            skipped_reads=0,
            invalid_actions=0,
        )
        return await self._loop(traj, question, engine, tools, sampling)

    # ---- pieces ------------------------------------------------------------------------------------
    def _history(self, entries: list[str]) -> str:
        text = "\n\n".join(entries)
        return text[-self.cfg.history_chars :] if len(text) > self.cfg.history_chars else text

    def _values(self, question: str, entries: list[str]) -> dict[str, str]:
        return {
            "question": question,
            "history": self._history(entries),
            "today": date.today().strftime("%Y.%m.%d"),
        }

    async def _call(self, traj, engine, sampling, role: str, purpose: str, **values: str):
        ids = self.chat_prompt_ids(self.templates[role].render(**values))
        if not self.fits(ids):
            return None
        return await self.generate(traj, engine, ids, sampling, stop=STOP, purpose=purpose)

    async def _answer(
        self, traj, engine, sampling, question, entries, reasoning: list[str], why: str
    ) -> Trajectory:
        call = await self._call(traj, engine, sampling, "answer", "answer", **self._values(question, entries))
        pred = None
        if call is not None:
            reasoning.append(call.output_text)
            pred = extract_tag(strip_think(call.output_text), "answer") or fallback_answer(call.output_text)
        if pred is None:
            pred = fallback_answer("\n".join(reasoning))
            traj.meta["answer_fallback"] = pred is not None
        traj.meta["answer_phase"] = why
        if call is None:
            return self.finish(traj, "context", pred)
        return self.finish(traj, "answer" if pred else why, pred)

    def _answer_phase(self, acts: int, docs: int) -> bool:
        """Whether the act prompt offers (and the agent accepts) an answer now."""
        cfg = self.cfg
        if cfg.answer_policy == "min_searches":
            return True
        forced = cfg.force_answer_turns is not None and acts >= cfg.force_answer_turns
        return docs >= cfg.answer_phase_docs or forced

    async def _loop(self, traj, question, engine, tools, sampling) -> Trajectory:
        cfg = self.cfg
        entries: list[str] = []  # history items: notes, tool calls, result stubs
        reasoning: list[str] = []  # every output, for the fallback answer
        jobs: deque[Job] = deque()
        unread: deque[Job] = deque()  # page chunks waiting for a later act (page_reading: one_per_act)
        acts = searches = docs = 0
        chunk_before_act = False
        while True:
            remaining = cfg.max_turns - len(traj.llm_calls)
            if remaining <= 1:
                return await self._answer(traj, engine, sampling, question, entries, reasoning, "max_turns")
            if cfg.force_answer_turns is not None and acts >= cfg.force_answer_turns and not jobs:
                return await self._answer(traj, engine, sampling, question, entries, reasoning, "max_turns")
            if jobs:
                job = jobs.popleft()
                role = "read_page" if job.kind == "page" else "read_search"
                call = await self._call(
                    traj,
                    engine,
                    sampling,
                    role,
                    "read",
                    content=job.content,
                    **self._values(question, entries),
                )
                entries.append(f"<information>\n{job.stub}\n</information>")
                if call is None:  # too long to read: keep the stub, note it, move on
                    traj.meta["skipped_reads"] += 1
                    continue
                reasoning.append(call.output_text)
                note = (
                    extract_tag(strip_think(call.output_text), "thought")
                    or strip_think(call.output_text).strip()
                )
                if note:
                    entries.append(f"<thought>{note}</thought>")
                continue

            if unread and not chunk_before_act:
                jobs.append(unread.popleft())  # one more chunk of the opened page, then the act
                chunk_before_act = True
                continue
            chunk_before_act = False
            in_phase = self._answer_phase(acts, docs)
            role = "act" if in_phase else "explore"
            call = await self._call(traj, engine, sampling, role, "act", **self._values(question, entries))
            if call is None:
                return await self._answer(traj, engine, sampling, question, entries, reasoning, "context")
            acts += 1
            reasoning.append(call.output_text)
            visible = strip_think(call.output_text)
            thought = extract_tag(visible, "thought") or ""
            head = f"<thought>{thought}</thought>\n" if thought else ""
            action = parse_action(visible, allowed=self.allowed)
            if action.kind == "answer":
                if in_phase and searches >= cfg.min_searches:
                    entries.append(head + f"<answer>{action.argument}</answer>")
                    return self.finish(traj, "answer", action.argument)
                traj.meta["discarded_answers"].append(action.argument)
                entries.append(
                    head
                    + (
                        f"(An answer was proposed after {searches} of the required "
                        f"{cfg.min_searches} searches; keep researching.)"
                        if in_phase
                        else "(An answer was proposed before the research was complete; keep researching.)"
                    )
                )
            elif action.kind == "search":
                entries.append(head + f"<search>{action.argument}</search>")
                hits = await self.search(traj, tools, action.argument)
                if hits is None:
                    entries.append("<information>\nThe search failed; try again or rephrase.\n</information>")
                elif not hits:
                    entries.append("<information>\nNo search results were found.\n</information>")
                else:
                    searches += 1
                    docs += 1  # one search-result block (upstream's doc_count)
                    text = format_hits(hits, cfg.doc_max_chars)
                    jobs.append(Job("search", text, text + "..."))
            elif action.kind == "access":
                entries.append(head + f"<access>{action.argument}</access>")
                ok, page = await self.access(traj, tools, action.argument)
                if not ok or not page:
                    entries.append(
                        "<information>\n"
                        + (
                            "Opening this URL failed."
                            if not ok
                            else "No content could be found for this URL."
                        )
                        + "\n</information>"
                    )
                else:
                    chunks = [
                        Job("page", c, c[: cfg.page_stub_chars] + "...")
                        for c in page_chunks(page, cfg.page_max_chars, cfg.page_chunk_chars)
                    ]
                    unread.clear()  # a newly opened page replaces the rest of the previous one
                    if cfg.page_reading == "one_per_act":
                        jobs.append(chunks[0])  # this act's chunk; the next one comes after the next act
                        unread.extend(chunks[1:])
                        chunk_before_act = True
                    else:
                        jobs.extend(chunks)
            else:
                traj.meta["invalid_actions"] += 1
                fb = self.templates["invalid"].render(
                    reason=action.reason, actions=actions_hint(self.allowed)
                )
                entries.append(head + fb.strip())
