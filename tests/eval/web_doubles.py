"""A browsing engine double for the web-setting tests: it drives the real agent through one search, one page read
and an answer, reading the link to open from its own prompt (as a model would), so every tool call goes through
the real tools. Output ids are the tokenizer's encoding of the scripted text, as a real engine returns."""

from __future__ import annotations

import re
from typing import Any

from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine

DOC_LINK = re.compile(r"\[Doc 1\]\((\S+?)\):")


class BrowsingEngine(InferenceEngine):
    """Per trajectory (request rid "<qid>#<sample>"): act 1 searches `query` (default: the question id's entry of
    `questions`, else a fixed query), act 2 opens the first result of the latest search shown in the prompt, act 3
    answers `answer`. Read turns (stop "</think>") write a short note."""

    def __init__(self, tokenizer: Any, *, questions: dict[str, str] | None = None, answer: str = "New York"):
        self.tokenizer = tokenizer
        self.questions = questions or {}
        self.answer = answer
        self.acts: dict[str, int] = {}
        self.prompts: list[str] = []

    @property
    def version(self) -> int:
        return 0

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        rid = request.rid or ""
        prompt = self.tokenizer.decode(request.input_ids)
        self.prompts.append(prompt)
        if "</think>" in request.sampling.stop:  # a read turn
            text, stop = "Noted.</think>", "</think>"
        else:
            n = self.acts.get(rid, 0)
            self.acts[rid] = n + 1
            links = DOC_LINK.findall(prompt)
            if n == 0:
                query = self.questions.get(rid.rsplit("#", 1)[0], "City Bank of New York founded 1812")
                text, stop = f"<search>{query}</search>", "</search>"
            elif n == 1 and links:
                text, stop = f"<access>{links[-1]}</access>", "</access>"
            else:
                text, stop = f"<answer>{self.answer}</answer>", "</answer>"
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return GenerationResult(ids, [0.0] * len(ids), [0] * len(ids), "stop", stop_string=stop, text=text)
