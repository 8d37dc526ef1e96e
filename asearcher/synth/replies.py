"""Reading the models' replies: one JSON value per reply, checked against the shape each prompt asks for.

Every synthesis prompt asks for a ```json block. Models also answer with a bare object, a plain ``` block, or
prose around it; `extract_json` takes the last fenced block, else the last JSON value in the text. A reply that
holds none, or one of the wrong shape, is a `ReplyError` whose `reason` is counted in the statistics.
"""

from __future__ import annotations

import json
import re
from typing import Any

from asearcher.agent.parsing import extract_tag
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)


class ReplyError(ValueError):
    """A reply without the JSON the prompt asked for; `reason` is a short code for the statistics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def extract_json(text: str) -> Any:
    """The JSON value of a reply: the last fenced block that parses, else the last JSON object/list in the text."""
    for block in reversed(_FENCE.findall(text or "")):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    found: Any = None
    i = 0
    text = text or ""
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            break
        j = min(starts)
        try:
            found, end = decoder.raw_decode(text, j)
            i = end
        except ValueError:
            i = j + 1
    if found is None:
        raise ReplyError("no_json", "the reply holds no JSON block")
    return found


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _clean(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    return " ".join(v.split())


class PageSummary(_Reply):
    title: str
    summary: str

    check_text = field_validator("title", "summary", mode="before")(_clean)


class QA(_Reply):
    question: str
    answer: str

    check_text = field_validator("question", "answer", mode="before")(_clean)


class QAWithStatement(QA):
    statement: str

    check_statement = field_validator("statement", mode="before")(_clean)


class Fuzzed(QA):
    changed: str = ""


class Action(_Reply):
    action: str
    reason: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> str:
        return _clean(v).lower()


class Covered(_Reply):
    covered: bool
    reason: str = ""


class Valid(_Reply):
    valid: bool
    reason: str = ""


class Alternative(_Reply):
    alternative: bool
    reason: str = ""


_POINTS = TypeAdapter(list[str])


def parse_reply(text: str, shape: type[BaseModel] | str) -> Any:
    """The reply as `shape` (a reply model, or "points" for a list of strings); ReplyError otherwise."""
    value = extract_json(text)
    if shape == "points":
        if isinstance(value, dict):  # {"points": [...]} or similar: accept the one list inside
            lists = [v for v in value.values() if isinstance(v, list)]
            value = lists[0] if len(lists) == 1 else value
        try:
            points = [" ".join(p.split()) for p in _POINTS.validate_python(value) if p.strip()]
        except ValidationError as e:
            raise ReplyError("bad_shape", _first_error(e)) from None
        if not points:
            raise ReplyError("bad_shape", "the list of points is empty")
        return points
    if not isinstance(value, dict):
        raise ReplyError("bad_shape", f"expected a JSON object, got {type(value).__name__}")
    try:
        return shape.model_validate(value)  # type: ignore[union-attr]
    except ValidationError as e:
        raise ReplyError("bad_shape", _first_error(e)) from None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {err['msg']}"


def extract_answer(text: str) -> str:
    """The last <answer>...</answer> of a no-tool reply ("" when there is none), by the agents' tag parser."""
    found = extract_tag(text or "", "answer")
    return " ".join(found.split()) if found else ""
