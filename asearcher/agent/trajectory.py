"""What an agent run records. RL trains from exactly these records (token ids, never re-tokenized text).

A Trajectory is an ordered list of events: each LLM call (input and output token ids, behaviour logprobs,
per-token policy versions, timing) and each tool call (tool, argument, result, timing), plus the final
answer and stats. `to_dict`/`from_dict` give the JSON form written to results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


@dataclass
class LLMCall:
    input_ids: list[int]
    output_ids: list[int]
    output_logprobs: list[float]
    output_versions: list[int]
    finish_reason: str
    purpose: str = "act"  # "act" (choose an action), "read" (summarize a page/results), "answer"
    output_text: str = ""
    t_start: float = 0.0
    t_end: float = 0.0
    type: Literal["llm"] = "llm"


@dataclass
class ToolCall:
    tool: str  # "search" | "access"
    argument: str
    ok: bool
    result: Any = None  # search: list of {"url","contents"}; access: page text (or None)
    error: str | None = None
    t_start: float = 0.0
    t_end: float = 0.0
    type: Literal["tool"] = "tool"


@dataclass
class Trajectory:
    qid: str
    question: str
    answers: list[str]
    agent: str
    prompt_hash: str
    sample_idx: int = 0
    seed: int | None = None
    events: list[LLMCall | ToolCall] = field(default_factory=list)
    prediction: str | None = None
    finish: str = "running"  # "answer", "max_turns", "context", "eos", "error"
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. valid_instruction used, train-time info

    # ---- derived -----------------------------------------------------------------------------
    @property
    def llm_calls(self) -> list[LLMCall]:
        return [e for e in self.events if isinstance(e, LLMCall)]

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [e for e in self.events if isinstance(e, ToolCall)]

    def stats(self) -> dict[str, Any]:
        llm, tools = self.llm_calls, self.tool_calls
        gen_s = sum(c.t_end - c.t_start for c in llm)
        tool_s = sum(c.t_end - c.t_start for c in tools)
        return {
            "turns": len(llm),
            "searches": sum(t.tool == "search" for t in tools),
            "searches_failed": sum(t.tool == "search" and not t.ok for t in tools),
            "accesses": sum(t.tool == "access" for t in tools),
            "accesses_failed": sum(t.tool == "access" and not t.ok for t in tools),
            "input_tokens": sum(len(c.input_ids) for c in llm),
            "output_tokens": sum(len(c.output_ids) for c in llm),
            "max_context_tokens": max((len(c.input_ids) + len(c.output_ids) for c in llm), default=0),
            "generate_s": gen_s,
            "tool_s": tool_s,
        }

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # Shallow per-event dicts: dataclasses.asdict deep-copies every token list, which dominated eval time.
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "events"}
        d["answers"] = list(self.answers)
        d["meta"] = dict(self.meta)
        d["events"] = [{f.name: getattr(e, f.name) for f in fields(e)} for e in self.events]
        d["stats"] = self.stats()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        d = dict(d)
        d.pop("stats", None)
        events = []
        for e in d.pop("events", []):
            e = dict(e)
            kind = e.get("type")
            if kind == "llm":
                events.append(LLMCall(**e))
            elif kind == "tool":
                events.append(ToolCall(**e))
            else:
                raise ValueError(f"unknown trajectory event type {kind!r}")
        return cls(events=events, **d)
