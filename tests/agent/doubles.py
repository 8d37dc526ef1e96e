"""Test doubles for the agent tests: a small real HF tokenizer, a scripted engine and an in-memory tool backend.

ScriptedEngine behaves like a real engine at the token level: it tokenizes the scripted text, cuts it after
the first stop string (kept in the output, as engines do), stops at max_new_tokens ("length"), and marks eos
when the script ends with EOS. It records every request so tests can check the exact ids sent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine
from asearcher.tools.base import SearchHit, ToolBackend, ToolError

EOS = "<|im_end|>"
PAD = "<|endoftext|>"
PROMPTS = Path(__file__).resolve().parents[2] / "asearcher" / "agent" / "prompts"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@lru_cache(maxsize=1)
def make_tokenizer():
    """A byte-level BPE tokenizer (any text round-trips) trained in a blink on the prompt files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [p.read_text() for p in sorted(PROMPTS.glob("*.txt"))] * 3
    texts += [
        "<search> who wrote hamlet </search> <answer> William Shakespeare </answer> <think> </think>"
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=[PAD, "<|im_start|>", EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    hf.chat_template = CHAT_TEMPLATE
    return hf


Script = str | Callable[[str], str]


class ScriptedEngine(InferenceEngine):
    """Returns scripted outputs in order. A script item may be a function of the decoded prompt.

    A script text ending with EOS gets the eos token appended (the text before it is tokenized normally).
    When the script runs out, the engine answers EOS only.
    """

    def __init__(
        self,
        tokenizer,
        outputs: list[Script],
        version: int = 3,
        eos_in_ids: bool = True,
        finish_override: str | None = None,
    ):
        self.tokenizer = tokenizer
        self.eos_in_ids = eos_in_ids  # False: like an engine that reports "stop" but drops the eos token
        self.finish_override = finish_override
        self.outputs = list(outputs)
        self.requests: list[GenerationRequest] = []
        self.prompts: list[str] = []
        self._version = version

    @property
    def version(self) -> int:
        return self._version

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        prompt = self.tokenizer.decode(request.input_ids)
        self.requests.append(request)
        self.prompts.append(prompt)
        item = self.outputs.pop(0) if self.outputs else EOS
        text = item(prompt) if callable(item) else item
        eos = text.endswith(EOS)
        if eos:
            text = text[: -len(EOS)]
        stop_string = None
        cut = None
        for s in request.sampling.stop:
            i = text.find(s)
            if i >= 0 and (cut is None or i + len(s) < cut):
                cut, stop_string = i + len(s), s
        if cut is not None:
            text, eos = text[:cut], False
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if eos and self.eos_in_ids:
            ids.append(self.tokenizer.eos_token_id)
        finish = "stop" if (eos or stop_string) else "length"
        if len(ids) > request.sampling.max_new_tokens:
            ids, finish, stop_string = ids[: request.sampling.max_new_tokens], "length", None
        n = len(ids)
        finish = self.finish_override or finish
        return GenerationResult(
            output_ids=ids,
            output_logprobs=[-0.01 * (1 + i % 5) for i in range(n)],
            output_versions=[self._version] * n,
            finish_reason=finish,
            stop_string=stop_string,
            text=self.tokenizer.decode(ids),
        )


class FakeTools(ToolBackend):
    """In-memory search (substring match over docs) and pages; `fail` makes the named tool raise ToolError."""

    name = "fake"

    def __init__(
        self,
        docs: list[dict] | None = None,
        pages: dict[str, str] | None = None,
        fail: set[str] | None = None,
    ):
        self.docs = docs or []
        self.pages = pages or {}
        self.fail = fail or set()
        self.calls: list[tuple[str, str]] = []

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        self.calls.append(("search", query))
        if "search" in self.fail:
            raise ToolError("retrieval server unreachable")
        words = query.lower().split()
        hits = [d for d in self.docs if any(w in d["contents"].lower() for w in words)]
        return [SearchHit(url=d["url"], contents=d["contents"], id=d.get("id")) for d in hits[:topk]]

    async def access(self, url: str) -> str | None:
        self.calls.append(("access", url))
        if "access" in self.fail:
            raise ToolError("page server unreachable")
        return self.pages.get(url)
