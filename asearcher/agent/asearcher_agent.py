"""The base-model ASearcher agent (paper §2.2): one growing completion prompt, tags as the action protocol.

Turn loop (every turn is one LLM generation; `max_turns` counts them all):
- act turn: the prompt is the history; stop at </search>, </access>, </answer> (and eos). The action in the
  output is executed; each tool result is queued as a "read" job.
- read turn (whenever a job is queued): the prompt is history + "\\n\\n" + the full <information> block +
  "\\n<think>\\n", stop at </think>; the model reads/summarises the information in its own words.
  Afterwards the history keeps only a short stub of a page chunk (search results are kept in full).
- an invalid action (empty tag, unavailable tool) appends a feedback <information> block and continues;
  an output that ends with eos without any action ends the trajectory ("eos").

Token-in, token-out: the next prompt's ids are built by appending ids (previous input ids + output ids +
ids of the new text) whenever the history only grows, so consecutive calls share exact token prefixes and
the trainer can pack them into one sequence. Only replacing a page chunk by its stub starts a new prefix.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from datetime import date

from asearcher.agent.common import BaseSearchAgent, actions_hint, page_chunks
from asearcher.agent.parsing import parse_action
from asearcher.agent.templates import RoleSpec
from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend

log = logging.getLogger(__name__)

ACT_STOP = ["</search>", "</access>", "</answer>"]
READ_STOP = ["</think>"]
NO_RESULTS = "No search results were found for this query."
NO_PAGE = "No content could be found for this URL."


@dataclass
class ReadJob:
    full: str  # the complete <information> block shown in the read turn
    short: str  # what the history keeps afterwards (== full for search results)


def info_block(body: str) -> str:
    return f"<information>\n{body}\n</information>"


def format_search_results(hits: list[SearchHit] | None, doc_max_chars: int) -> str:
    if hits is None:
        return info_block("The search failed; try again or rephrase the query.")
    if not hits:
        return info_block(NO_RESULTS)
    docs = [f"[Doc {i}]({h.url}):\n{h.contents[:doc_max_chars]}" for i, h in enumerate(hits, start=1)]
    return info_block("\n\n".join(docs))


def page_jobs(
    ok: bool, page: str | None, cfg_page_max: int, chunk_chars: int, stub_chars: int
) -> list[ReadJob]:
    if not ok:
        return [ReadJob(*(2 * [info_block("Opening this URL failed; try another one.")]))]
    if not page:
        return [ReadJob(*(2 * [info_block(NO_PAGE)]))]
    jobs = []
    for k, chunk in enumerate(page_chunks(page, cfg_page_max, chunk_chars), start=1):
        head = f">>>> Page {k} >>>>\n\n"
        jobs.append(ReadJob(full=info_block(head + chunk), short=info_block(head + chunk[:stub_chars])))
    return jobs


class AsearcherAgent(BaseSearchAgent):
    name = "asearcher"

    def role_specs(self) -> dict[str, RoleSpec]:
        prompt = "asearcher.txt" if self.cfg.allow_access else "asearcher_search_only.txt"
        return {
            "prompt": RoleSpec(
                prompt, frozenset({"question", "validity_note", "today"}), frozenset({"question"})
            ),
            "note_invalid": RoleSpec("asearcher_note_invalid_allowed.txt", frozenset()),
            "note_valid": RoleSpec("asearcher_note_valid.txt", frozenset()),
            "invalid": RoleSpec("asearcher_invalid.txt", frozenset({"reason", "actions"})),
        }

    @property
    def allowed(self) -> list[str]:
        return ["search", "access", "answer"] if self.cfg.allow_access else ["search", "answer"]

    def initial_prompt(self, question: str, valid: bool) -> str:
        note = self.templates["note_valid" if valid else "note_invalid"].render().strip()
        return self.templates["prompt"].render(
            question=question, validity_note=note, today=date.today().strftime("%Y.%m.%d")
        )

    async def rollout(
        self,
        traj: Trajectory,
        question: str,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        rng: random.Random,
    ) -> Trajectory:
        valid = rng.random() < self.cfg.valid_instruction_prob
        traj.meta.update(
            valid_instruction=valid,
            prompt_variant="valid" if valid else "invalid_allowed",
            allow_access=self.cfg.allow_access,
        )
        return await self._loop(traj, engine, tools, sampling, self.initial_prompt(question, valid))

    async def _loop(
        self,
        traj: Trajectory,
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        prompt: str,
    ) -> Trajectory:
        cfg = self.cfg
        history = self.encode(prompt, first=True)  # token ids of everything the model has seen so far
        jobs: deque[ReadJob] = deque()
        while len(traj.llm_calls) < cfg.max_turns:
            if jobs:
                job = jobs.popleft()
                ids = history + self.encode("\n\n" + job.full + "\n<think>\n")
                if not self.fits(ids):
                    return self.finish(traj, "context")
                call = await self.generate(traj, engine, ids, sampling, stop=READ_STOP, purpose="read")
                if job.short == job.full:
                    history = ids + call.output_ids  # append-only: the next call extends this one
                else:  # the chunk is replaced by its stub: a new token prefix starts here
                    history = history + self.encode("\n\n" + job.short + "\n<think>\n") + call.output_ids
                if self.ended_by_eos(call, READ_STOP):
                    return self.finish(traj, "eos")
                continue

            if not self.fits(history):
                return self.finish(traj, "context")
            call = await self.generate(traj, engine, history, sampling, stop=ACT_STOP, purpose="act")
            history = history + call.output_ids
            action = parse_action(call.output_text, allowed=self.allowed)
            if action.kind == "answer":
                return self.finish(traj, "answer", action.argument)
            if action.kind == "search":
                hits = await self.search(traj, tools, action.argument)
                block = format_search_results(hits, cfg.doc_max_chars)
                jobs.append(ReadJob(block, block))
            elif action.kind == "access":
                ok, page = await self.access(traj, tools, action.argument)
                jobs.extend(
                    page_jobs(ok, page, cfg.page_max_chars, cfg.page_chunk_chars, cfg.page_stub_chars)
                )
            elif self.ended_by_eos(call, ACT_STOP):
                return self.finish(traj, "eos")
            elif action.kind == "invalid" or call.finish_reason != "length":
                # a malformed action (or a stop without any action): tell the model and carry on
                feedback = self.templates["invalid"].render(
                    reason=action.reason, actions=actions_hint(self.allowed)
                )
                history = history + self.encode("\n\n" + info_block(feedback.strip()) + "\n\n")
                traj.meta["invalid_actions"] = traj.meta.get("invalid_actions", 0) + 1
            # finish "length" without an action: the next turn simply continues the text
        return self.finish(traj, "max_turns")
