"""A SCRIPTED engine double for the synthesis agent: tests and benchmarks only, never the product's models.

It recognises which synthesis prompt (or the answer judge's) a chat message was rendered from and answers by a
rule: by default a well-formed reply that keeps the loop going (the reasoner always edits, never solves a
question without tools, and never finds an alternative answer), so every branch can be reached by overriding one
rule. `latency_s` sleeps per call, as a served model's per-call latency would; it uses no CPU while it waits.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from asearcher.llm.engine import SamplingParams

from .roles import load_prompts

Rule = Callable[[str, SamplingParams], str] | str | list | BaseException


def _fenced(obj: Any) -> str:
    return "```json\n" + json.dumps(obj) + "\n```"


def _field(text: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}:[ \t]*(.*)$", text, re.M)
    return m.group(1).strip() if m else ""


def _default_rules() -> dict[str, Rule]:
    def summarize(text: str, s: SamplingParams) -> str:
        url = _field(text, "URL")
        title = re.sub(r"%20", " ", url.split("title=")[-1]) if "title=" in url else url
        return _fenced({"title": title, "summary": f"{title} is the subject of this page."})

    def points(text: str, s: SamplingParams) -> str:
        title = _field(text, "Title")
        return _fenced([f"{title} has fact number {i}." for i in range(3)])

    def base_qa(text: str, s: SamplingParams) -> str:
        title = _field(text, "Entity")
        return _fenced({"question": f"Which entity is described as {title}?", "answer": title,
                        "statement": f"{title} is {title}."})  # fmt: skip

    def choose(text: str, s: SamplingParams) -> str:
        names = re.search(r'"action" \(one of: ([^)]*)\)', text)
        options = [o.strip() for o in names.group(1).split(",")] if names else ["fuzz"]
        return _fenced({"action": options[0], "reason": "scripted"})

    def link_qa(text: str, s: SamplingParams) -> str:
        a, b = _field(text, "Entity A"), _field(text, "Entity B")
        return _fenced(
            {"question": f"What links to {b}?", "answer": a, "statement": f"{a} is linked with {b}."}
        )

    def compose(text: str, s: SamplingParams) -> str:
        q, a = _field(text, "Current question"), _field(text, "Its answer")
        link = _field(text, "A question that describes that entity without naming it")
        return _fenced({"question": f"{q} (given: {link})", "answer": a})

    def fuzz(text: str, s: SamplingParams) -> str:
        q, a = _field(text, "Question"), _field(text, "Its answer")
        return _fenced({"question": f"{q} (vaguely, v{s.seed % 997 if s.seed else 0})", "answer": a,
                        "changed": "a detail"})  # fmt: skip

    return {
        "summarize_page": summarize,
        "extract_points": points,
        "base_qa": base_qa,
        "choose_action": choose,
        "link_qa": link_qa,
        "check_cover": _fenced({"covered": False, "reason": "new"}),
        "compose_qa": compose,
        "fuzz": fuzz,
        "check_valid": _fenced({"valid": True, "reason": "fine"}),
        "direct_answer": "I think <answer>something else</answer>",
        "judge": _fenced({"rationale": "differs", "judgement": "Incorrect"}),
        "check_alternative": _fenced({"alternative": False, "reason": "wrong"}),
    }


def _prefixes() -> dict[str, str]:
    """The literal text before the first placeholder of every template: enough to tell them apart."""
    out = {n: p.template.split("{", 1)[0] for n, p in load_prompts().items()}
    judge = resources.files("asearcher.eval").joinpath("prompts", "judge.txt").read_text(encoding="utf-8")
    out["judge"] = judge.split("{", 1)[0]
    return out


class ScriptedEngine:
    """Answers synthesis prompts by rule. `rules` overrides the defaults: a string (always), a list (one reply per
    call, the last repeated), or a function (prompt text, sampling) -> reply."""

    def __init__(self, rules: dict[str, Rule] | None = None, *, latency_s: float = 0.0, seed: int = 0):
        self.rules = {**_default_rules(), **(rules or {})}
        self.latency_s = latency_s
        self.calls: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str]] = []  # (prompt name, message) of every call
        self._prefixes = sorted(_prefixes().items(), key=lambda kv: -len(kv[1]))
        self._rng = random.Random(seed)
        self.tokenizer = None

    def prompt_name(self, text: str) -> str:
        for name, prefix in self._prefixes:
            if prefix and text.startswith(prefix):
                return name
        raise ValueError(f"scripted engine: unknown prompt {text[:80]!r}")

    async def achat(self, messages: list[dict[str, str]], sampling: SamplingParams | None = None) -> str:
        s = sampling or SamplingParams()
        text = messages[-1]["content"]
        name = self.prompt_name(text)
        n = self.calls[name]
        self.calls[name] += 1
        self.log.append((name, text))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        rule = self.rules[name]
        if isinstance(rule, list):
            rule = rule[min(n, len(rule) - 1)]
        if isinstance(rule, BaseException):  # a failing call (endpoint down, timeout)
            raise rule
        return rule if isinstance(rule, str) else rule(text, s)

    async def aclose(self) -> None:
        return None
