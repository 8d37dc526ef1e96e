"""LLM-as-judge ("LasJ"): ask a judge model whether a prediction matches the gold answers.

Works with any engine: an OpenAI-compatible engine's `achat(messages, sampling)`, or any `InferenceEngine`
whose tokenizer has a chat template (the prompt is rendered locally and decoded from token ids).

Differences from upstream, on purpose:
- retries on an unparseable verdict are BOUNDED (`max_retries`); upstream's SGLang path can loop forever;
- a verdict is recovered from messy replies through a chain of parsers (```json block, bare JSON object,
  Python-literal dict, a `"judgement": "..."` pattern, then a lone Correct/Incorrect word);
- an empty prediction is not sent to the judge (it is Incorrect without a call).

Prompts (asearcher/eval/prompts/, our wording): `judge.txt` (default) asks upstream's question, whether the
predicted answer is equivalent to the labeled answer, with the same verdict format (a ```json block with
"rationale" and "judgement": "Correct" | "Incorrect") and no further rules; `judge_strict.txt` also tells the
judge to reject vaguer or broader answers, several candidates and contradictions. The protocol card records
the prompt's name and sha256 (`Judge.describe()`).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.llm.engine import GenerationRequest, SamplingParams
from asearcher.utils.secrets import redact

log = logging.getLogger(__name__)

#: chat function: (messages, sampling) -> reply text
ChatFn = Callable[[list[dict[str, str]], SamplingParams], Awaitable[str]]

PREDICTION_MAX_CHARS = 500  # what upstream shows the judge (it cuts at 1000, then [:500] in the prompt)
RAW_MAX_CHARS = 2000  # judge replies kept in results (the verdict sits at the end, so keep the tail)
#: upstream's question (is the prediction equivalent to the labeled answer?) and verdict format, nothing more
DEFAULT_PROMPT = "judge.txt"
#: the stricter prompt: also rejects vaguer or broader answers, several candidates, contradictions
STRICT_PROMPT = "judge_strict.txt"

CORRECT, INCORRECT = "Correct", "Incorrect"


def load_prompt(name_or_path: str = DEFAULT_PROMPT) -> str:
    """A judge prompt template: a file in asearcher/eval/prompts/ or a path to your own.

    The template is a `str.format` string with {question}, {answers}, {prediction} (literal braces doubled).
    """
    from pathlib import Path

    p = Path(name_or_path)
    if p.is_file():
        text = p.read_text(encoding="utf-8")
    else:
        try:
            text = (
                resources.files("asearcher.eval")
                .joinpath("prompts", name_or_path)
                .read_text(encoding="utf-8")
            )
        except (FileNotFoundError, IsADirectoryError):
            raise UserFacingError(
                f"judge prompt {name_or_path!r} not found: give a file in asearcher/eval/prompts/ or a path"
            ) from None
    for field in ("{question}", "{answers}", "{prediction}"):
        if field not in text:
            raise UserFacingError(f"judge prompt {name_or_path!r} lacks the placeholder {field}")
    return text


def clip_prediction(prediction: str | None) -> str:
    """Cut at the first closing tag ('</', e.g. a stray '</answer>') and to PREDICTION_MAX_CHARS, as upstream."""
    text = prediction or ""
    cut = text.find("</")
    if cut != -1:
        text = text[:cut]
    return text.strip()[:PREDICTION_MAX_CHARS]


def build_prompt(template: str, question: str, answers: list[str], prediction: str | None) -> str:
    gold = "\n".join(f"- {a}" for a in answers) if answers else "- (none)"
    return template.format(question=question, answers=gold, prediction=clip_prediction(prediction))


# ---- verdict parsing ------------------------------------------------------------------------------------

_JUDGEMENT_RE = re.compile(r"""["']?judge?ment["']?\s*[:=]\s*["']?\s*(correct|incorrect)\b""", re.IGNORECASE)
_WORD_RE = re.compile(r"(?<![A-Za-z])(not\s+)?(Correct|Incorrect|CORRECT|INCORRECT)(?![A-Za-z])")


def _verdict_from_obj(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    for key in ("judgement", "judgment", "Judgement", "Judgment"):
        if key in obj:
            val = str(obj[key]).strip().strip(".").lower()
            if val == "correct":
                return CORRECT
            if val == "incorrect":
                return INCORRECT
            return None
    return None


def _parse_object(text: str) -> str | None:
    for loader in (json.loads, ast.literal_eval):
        try:
            v = _verdict_from_obj(loader(text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if v is not None:
            return v
    return None


def parse_verdict(reply: str) -> tuple[str | None, str]:
    """Return (Correct | Incorrect | None, which parser succeeded)."""
    if not reply:
        return None, "empty"
    # 1. the last ```json fenced block
    if "```json" in reply:
        block = reply.rsplit("```json", 1)[1].split("```", 1)[0].strip()
        v = _parse_object(block)
        if v:
            return v, "json_block"
    # 2. the last bare {...} object in the reply
    end = reply.rfind("}")
    if end != -1:
        start = reply.rfind("{", 0, end)
        while start != -1:
            v = _parse_object(reply[start : end + 1])
            if v:
                return v, "json_object"
            start = reply.rfind("{", 0, start)
    # 3. a "judgement": "correct" pattern anywhere (last one wins)
    found = _JUDGEMENT_RE.findall(reply)
    if found:
        return (CORRECT if found[-1].lower() == "correct" else INCORRECT), "pattern"
    # 4. capitalised verdict words; only when they all agree and none is negated ("not Correct")
    words = _WORD_RE.findall(reply)
    if words and not any(neg for neg, _ in words):
        kinds = {w.lower() for _, w in words}
        if len(kinds) == 1:
            return (CORRECT if kinds == {"correct"} else INCORRECT), "word"
    return None, "unparsed"


# ---- the judge ------------------------------------------------------------------------------------------


@dataclass
class JudgeResult:
    score: float  # 1.0 Correct, else 0.0 (an unparsed or failed judgement scores 0, as upstream)
    judgement: str | None  # "Correct" | "Incorrect" | None
    status: str  # "ok" | "unparsed" | "error"
    attempts: int
    raw: str = ""  # last judge reply (tail, truncated)
    parser: str = ""  # which parser read the verdict
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chat_fn_for(engine: Any) -> ChatFn:
    """Adapt an engine to a chat function: `achat` if it has one, else chat template + `agenerate`."""
    achat = getattr(engine, "achat", None)
    if callable(achat):
        return achat
    tok = getattr(engine, "tokenizer", None)
    if tok is None or not getattr(tok, "chat_template", None):
        raise UserFacingError(
            f"judge engine {type(engine).__name__} has neither achat() nor a tokenizer with a chat template; "
            "use an instruct model (eval.judge.model) or an OpenAI-compatible endpoint (eval.judge.kind: openai)"
        )

    async def chat(messages: list[dict[str, str]], sampling: SamplingParams) -> str:
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok.encode(text, add_special_tokens=False)
        res = await engine.agenerate(GenerationRequest(input_ids=ids, sampling=sampling))
        if res.text is not None:
            return res.text
        return tok.decode(res.output_ids, skip_special_tokens=True)

    return chat


class Judge:
    """Scores predictions with a judge LLM; at most `concurrency` judge calls run at once."""

    def __init__(
        self,
        chat: ChatFn,
        *,
        model: str = "judge",
        sampling: SamplingParams | None = None,
        max_retries: int = 3,
        concurrency: int = 32,
        prompt: str = DEFAULT_PROMPT,
        owned_engine: Any = None,
    ):
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.chat = chat
        self.model = model
        self.sampling = sampling or SamplingParams(max_new_tokens=1024, temperature=0.6, top_p=0.95)
        self.max_retries = max_retries
        self.prompt = prompt
        self.template = load_prompt(prompt)
        self._sem = asyncio.Semaphore(concurrency)
        self._owned_engine = owned_engine

    def describe(self) -> dict[str, Any]:
        """What the protocol card records about this judge."""
        return {
            "model": self.model,
            "prompt": self.prompt,  # bundled name (judge.txt, judge_strict.txt) or the path of your own
            "prompt_sha256": hashlib.sha256(self.template.encode("utf-8")).hexdigest(),
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_new_tokens": self.sampling.max_new_tokens,
            "max_retries": self.max_retries,
        }

    async def judge(
        self, question: str, answers: list[str], prediction: str | None, *, seed: int | None = None
    ) -> JudgeResult:
        if not clip_prediction(prediction):
            return JudgeResult(0.0, INCORRECT, "ok", 0, raw="", parser="empty_prediction")
        messages = [{"role": "user", "content": build_prompt(self.template, question, answers, prediction)}]
        raw, error, replied = "", None, False
        attempts = 0
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
            # a fresh seed per attempt, so a retry can give a different (parseable) reply
            s = SamplingParams(**{**asdict(self.sampling), "seed": None if seed is None else seed + attempt})
            try:
                async with self._sem:
                    raw = await self.chat(messages, s)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # endpoint down, timeout...: retried, then reported as status=error
                error = redact(f"{type(e).__name__}: {e}")  # an endpoint may echo the API key
                log.warning("judge call failed (attempt %d/%d): %s", attempts, self.max_retries + 1, error)
                continue
            replied = True
            verdict, parser = parse_verdict(raw or "")
            if verdict is not None:
                return JudgeResult(
                    1.0 if verdict == CORRECT else 0.0, verdict, "ok", attempts, _tail(raw), parser, None
                )
        status = "unparsed" if replied else "error"
        return JudgeResult(0.0, None, status, attempts, _tail(raw), "unparsed" if replied else "", error)

    async def aclose(self) -> None:
        if self._owned_engine is not None:
            await self._owned_engine.aclose()


def _tail(text: str | None) -> str:
    text = redact(text or "")  # before cutting: a cut must never split a secret
    return text if len(text) <= RAW_MAX_CHARS else "..." + text[-RAW_MAX_CHARS:]


def make_judge(cfg: Any) -> Judge:
    """Build a Judge (and its engine) from an `eval.judge` config section."""
    from asearcher.config import EngineConfig
    from asearcher.llm.factory import ENGINES, make_engine

    ENGINES.canonical(
        cfg.kind, key="eval.judge.kind"
    )  # an unknown kind is an error before any engine is built
    engine_cfg = EngineConfig(
        kind=cfg.kind,
        model=cfg.model,
        base_url=cfg.base_url,
        api_key_env=cfg.api_key_env,
        api="chat",
    )
    engine = make_engine(engine_cfg, key="eval.judge.kind")
    sampling = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    return Judge(
        chat_fn_for(engine),
        model=cfg.model,
        sampling=sampling,
        max_retries=cfg.max_retries,
        concurrency=cfg.concurrency,
        prompt=cfg.prompt,
        owned_engine=engine,
    )
