"""Reading model output: the action it asks for, its thoughts, and the format facts the RL reward checks.

Everything here is total: any string (unbalanced, nested or repeated tags, huge outputs, stray special
tokens) gives a result, never an exception. Extraction follows the upstream rule: for each action tag take
the LAST complete `<tag>...</tag>` pair, then pick by priority search > access > answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

ActionKind = Literal["search", "access", "answer", "invalid", "none"]

#: kind -> accepted (open, close) tag pairs; the priority order is the dict order
DEFAULT_TAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "search": (("<search>", "</search>"),),
    "access": (("<access>", "</access>"),),
    "answer": (("<answer>", "</answer>"),),
}
#: Search-R1 also accepts the special-token query form
SEARCH_R1_TAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "search": (("<search>", "</search>"), ("<|begin_of_query|>", "<|end_of_query|>")),
    "answer": (("<answer>", "</answer>"),),
}


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    argument: str = ""  # stripped tag content (a substring of the parsed text); "" for invalid/none
    reason: str = ""  # why an action is invalid/none (shown to the model as feedback)

    @property
    def is_tool(self) -> bool:
        return self.kind in ("search", "access")


@lru_cache(maxsize=64)
def _pair_regex(open_tag: str, close_tag: str, forbid: tuple[str, ...]) -> re.Pattern[str]:
    # A pair whose content holds none of the kind's tags: for nested/repeated tags this is the innermost
    # complete pair, and scanning stays linear on long outputs (each attempt stops at the next tag).
    o, c = re.escape(open_tag), re.escape(close_tag)
    bad = "|".join(re.escape(t) for t in sorted({open_tag, close_tag, *forbid}))
    return re.compile(f"{o}((?:(?!{bad}).)*){c}", re.DOTALL)


def last_match(
    text: str, open_tag: str, close_tag: str, forbid: tuple[str, ...] = ()
) -> tuple[int, str] | None:
    """(end offset, raw content) of the last complete open..close pair whose content holds no tag of
    `forbid` (nor the pair's own tags), or None."""
    last = None
    for m in _pair_regex(open_tag, close_tag, tuple(forbid)).finditer(text):
        last = m
    return None if last is None else (last.end(), last.group(1))


def parse_action(
    text: str,
    *,
    allowed: Iterable[str] = ("search", "access", "answer"),
    tags: Mapping[str, Sequence[tuple[str, str]]] = DEFAULT_TAGS,
) -> Action:
    """The action a generation asks for.

    - the last complete pair of each kind's tags counts (for kinds with several tag forms, the pair that
      ends last); the kinds are tried in the priority order of `tags`;
    - a found kind that is not in `allowed` (e.g. <access> for a search-only agent), or an empty argument,
      gives kind "invalid" with a reason;
    - no complete pair at all gives kind "none".
    """
    if not isinstance(text, str):
        return Action("none", reason="output is not text")
    allowed = set(allowed)
    for kind, pairs in tags.items():
        best: tuple[int, str] | None = None
        kind_tags = tuple(t for pair in pairs for t in pair)
        for open_tag, close_tag in pairs:
            m = last_match(text, open_tag, close_tag, kind_tags)
            if m is not None and (best is None or m[0] > best[0]):
                best = m
        if best is None:
            continue
        arg = best[1].strip()
        if kind not in allowed:
            return Action("invalid", reason=f"the {kind} action is not available here")
        if not arg:
            return Action("invalid", reason=f"the <{kind}> tag is empty")
        return Action(kind, argument=arg)  # type: ignore[arg-type]
    return Action("none", reason="no complete action tag was found")


def extract_tag(text: str, tag: str) -> str | None:
    """Stripped content of the last complete <tag>...</tag>, or None."""
    m = last_match(text, f"<{tag}>", f"</{tag}>")
    return None if m is None else m[1].strip()


def extract_think(text: str, tag: str = "think") -> str | None:
    """The reasoning of a generation.

    The last complete <tag>...</tag>; or, when the prompt already opened the tag (the generation starts
    inside it), the text before the first closing tag. None when there is neither.
    """
    found = extract_tag(text, tag)
    if found is not None:
        return found
    close = f"</{tag}>"
    i = text.find(close)
    if i >= 0:
        return text[:i].strip()
    return None


def strip_think(text: str, tag: str = "think") -> str:
    """The part after the last </tag> (what an LRM says once its hidden reasoning ends); text if none."""
    close = f"</{tag}>"
    i = text.rfind(close)
    return text if i < 0 else text[i + len(close) :]


_ANSWER_LINE = re.compile(r"answer", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(r"^.*?\banswer\b\s*(?:is|:|=|-)?\s*[:\-]?\s*", re.IGNORECASE)


def fallback_answer(text: str) -> str | None:
    """Best-effort answer from free text when no <answer> tag was produced.

    Order: the last complete <answer> pair; an unclosed trailing <answer> (output cut by the token limit);
    the last line mentioning "answer" (the word, not the tags) with everything up to "answer (is|:)" removed;
    None. An empty <answer></answer> gives no answer by itself.
    """
    tagged = extract_tag(text, "answer")
    if tagged:
        return tagged
    i = text.rfind("<answer>")
    if i >= 0:
        rest = text[i + len("<answer>") :]
        if "</answer>" not in rest and rest.strip():  # unclosed (a closed one was empty)
            return rest.strip().splitlines()[0].strip() or None
    for line in reversed(text.splitlines()):
        line = line.replace("<answer>", " ").replace("</answer>", " ")  # markup, not the word
        if _ANSWER_LINE.search(line):
            cand = _ANSWER_PREFIX.sub("", line, count=1).strip().strip("*").strip()
            if cand:
                return cand
    return None


# ---- format facts for the RL format reward ------------------------------------------------------------

FORMAT_TAGS = ("search", "access", "answer", "think", "information")


def format_facts(text: str) -> dict[str, object]:
    """Facts about one generation that the format reward is built from (upstream: all generations must pass).

    Keys: `<tag>_open` / `<tag>_close` counts for search, access, answer, think, information; `tool_tags`
    (opening <search> + <access>); `has_assistant` ("Assistant"/"assistant" appears); `balanced` (open ==
    close for search, access and answer); `ok` (balanced, at most one tool tag, at most one <answer>, no
    "assistant", at most one </think>); `problems` (a list of human-readable reasons when not ok).
    """
    facts: dict[str, object] = {}
    for t in FORMAT_TAGS:
        facts[f"{t}_open"] = text.count(f"<{t}>")
        facts[f"{t}_close"] = text.count(f"</{t}>")
    tool_tags = int(facts["search_open"]) + int(facts["access_open"])  # type: ignore[call-overload]
    has_assistant = "assistant" in text or "Assistant" in text
    problems = []
    balanced = True
    for t in ("search", "access", "answer"):
        if facts[f"{t}_open"] != facts[f"{t}_close"]:
            balanced = False
            problems.append(f"unbalanced <{t}> tags")
    if tool_tags > 1:
        problems.append("more than one tool tag")
    if int(facts["answer_open"]) > 1:  # type: ignore[call-overload]
        problems.append("more than one <answer>")
    if has_assistant:
        problems.append('contains "assistant"')
    if int(facts["think_close"]) > 1:  # type: ignore[call-overload]
        problems.append("more than one </think>")
    facts.update(
        tool_tags=tool_tags,
        has_assistant=has_assistant,
        balanced=balanced,
        ok=not problems,
        problems=problems,
    )
    return facts


def trajectory_format_ok(outputs: Iterable[str]) -> bool:
    """The binary upstream format reward: every generation of a trajectory passes `format_facts`."""
    return all(format_facts(o)["ok"] for o in outputs)
