"""The two model roles of the synthesis agent, each any engine of the suite behind a chat function.

A `Role` renders one of the prompt files, calls its model under the role's own concurrency limit, and reads the
reply into the shape that prompt asks for. A malformed reply (no JSON, wrong keys) or a failed call is retried up
to `max_retries` times with a fresh sampling seed; after that the caller gets a `ReplyError` with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import hashlib
import logging
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from asearcher.eval.judge import ChatFn
from asearcher.llm.engine import SamplingParams

from .replies import ReplyError, parse_reply

log = logging.getLogger(__name__)

PROMPT_NAMES = (
    "summarize_page", "extract_points", "base_qa", "choose_action", "link_qa", "check_cover", "compose_qa",
    "fuzz", "check_valid", "direct_answer", "check_alternative",
)  # fmt: skip

_SEED_CALLS: contextvars.ContextVar[collections.Counter | None] = contextvars.ContextVar(
    "synth_calls", default=None
)


def count_calls() -> collections.Counter:
    """Count the calls made from here on in this asyncio task (and tasks it starts) into a fresh Counter."""
    counter: collections.Counter = collections.Counter()
    _SEED_CALLS.set(counter)
    return counter


@dataclass(frozen=True)
class Prompt:
    name: str
    template: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest()

    def render(self, **fields: Any) -> str:
        return self.template.format(**fields)


def load_prompts() -> dict[str, Prompt]:
    """Every prompt file of asearcher/synth/prompts/ (our wording; one file per call kind)."""
    base = resources.files("asearcher.synth").joinpath("prompts")
    return {n: Prompt(n, base.joinpath(f"{n}.txt").read_text(encoding="utf-8")) for n in PROMPT_NAMES}


class Role:
    """One model in one role ("reasoner" or "instruct"): prompts in, parsed replies out, calls counted."""

    def __init__(
        self,
        name: str,
        chat: ChatFn,
        prompts: dict[str, Prompt],
        *,
        sampling: SamplingParams,
        concurrency: int,
        max_retries: int,
        model: str = "",
    ):
        self.name = name
        self.model = model
        self.chat = chat
        self.prompts = prompts
        self.sampling = sampling
        self.max_retries = max_retries
        self._sem = asyncio.Semaphore(concurrency)
        self.calls: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()

    async def text(
        self, prompt: str, *, seed: int, sampling: SamplingParams | None = None, **fields: Any
    ) -> str:
        """One call: the raw reply text. Engine errors propagate."""
        s = replace(sampling or self.sampling, seed=seed)
        messages = [{"role": "user", "content": self.prompts[prompt].render(**fields)}]
        self._count(prompt)
        async with self._sem:
            return await self.chat(messages, s)

    def chat_fn(self, label: str) -> ChatFn:
        """This role's model as a plain chat function (for the answer judge): counted, under the same limit."""

        async def chat(messages: list[dict[str, str]], sampling: SamplingParams) -> str:
            self._count(label)
            async with self._sem:
                return await self.chat(messages, sampling)

        return chat

    def _count(self, label: str) -> None:
        self.calls[label] += 1
        seed_calls = _SEED_CALLS.get()
        if seed_calls is not None:
            seed_calls[f"{self.name}.{label}"] += 1

    async def ask(self, prompt: str, shape: Any, *, seed: int, **fields: Any) -> Any:
        """A call whose reply must parse as `shape`; bounded retries, then ReplyError (reason counted)."""
        last: ReplyError | None = None
        for attempt in range(self.max_retries + 1):
            try:
                reply = await self.text(prompt, seed=seed + attempt, **fields)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # endpoint down, timeout, engine error: retried like a malformed reply
                last = ReplyError("call_error", f"{type(e).__name__}: {e}")
                log.warning("%s call %s failed (attempt %d): %s", self.name, prompt, attempt + 1, last.detail)
                continue
            try:
                return parse_reply(reply, shape)
            except ReplyError as e:
                last = e
        assert last is not None
        self.failures[f"{prompt}:{last.reason}"] += 1
        raise ReplyError(f"{prompt}:{last.reason}", last.detail)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_new_tokens": self.sampling.max_new_tokens,
        }
