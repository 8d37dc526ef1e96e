"""LLM-as-judge: prompt building, verdict parsing, bounded retries, engine adapters, concurrency limit."""

from __future__ import annotations

import asyncio

import pytest

from asearcher.errors import UserFacingError
from asearcher.eval.judge import (
    PREDICTION_MAX_CHARS,
    Judge,
    build_prompt,
    chat_fn_for,
    clip_prediction,
    load_prompt,
    parse_verdict,
)
from asearcher.llm.engine import GenerationResult, InferenceEngine, SamplingParams


class ScriptedChat:
    """A judge double: returns scripted replies in order (the last one repeats); records every call."""

    def __init__(self, *replies: str | Exception, delay: float = 0.0):
        self.replies = list(replies)
        self.calls: list[tuple[list[dict], SamplingParams]] = []
        self.delay = delay
        self.inflight = 0
        self.max_inflight = 0

    async def __call__(self, messages, sampling):
        self.calls.append((messages, sampling))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.inflight -= 1
        r = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        if isinstance(r, Exception):
            raise r
        return r


def run(coro):
    return asyncio.run(coro)


GOOD = 'The names match.\n```json\n{"rationale": "same person", "judgement": "Correct"}\n```'


@pytest.mark.parametrize(
    "reply, verdict, parser",
    [
        (GOOD, "Correct", "json_block"),
        ('```json\n{"rationale": "no", "judgement": "incorrect"}\n```', "Incorrect", "json_block"),
        # single quotes: not JSON, but a Python literal
        ("```json\n{'rationale': 'ok', 'judgement': 'Correct'}\n```", "Correct", "json_block"),
        # two blocks: the last one counts
        (
            '```json\n{"judgement": "Correct"}\n``` wait\n```json\n{"judgement": "Incorrect"}\n```',
            "Incorrect",
            "json_block",
        ),
        # no fence, a bare object after prose (with a brace inside the rationale)
        (
            'Thinking... {"rationale": "a {set} differs", "judgement": "Incorrect"} done',
            "Incorrect",
            "json_object",
        ),
        # broken JSON (trailing comma, unclosed) but the key/value pattern is there
        ('```json\n{"rationale": "x", "judgement": "Correct",\n', "Correct", "pattern"),
        ("judgment: incorrect", "Incorrect", "pattern"),
        ("Correct", "Correct", "word"),
        ("The answer is Incorrect.", "Incorrect", "word"),
    ],
)
def test_parse_verdict_chain(reply, verdict, parser):
    assert parse_verdict(reply) == (verdict, parser)


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I cannot decide.",
        "It is not Correct",
        "Correct or Incorrect? Hard to say",
        '{"judgement": "maybe"}',
        "correct",
    ],  # lower-case lone words are too ambiguous in prose ("correct me if...")
)
def test_parse_verdict_rejects_ambiguous(reply):
    assert parse_verdict(reply)[0] is None


def test_clip_prediction_cuts_at_closing_tag_and_length():
    assert clip_prediction("Paris</answer> trailing") == "Paris"
    assert clip_prediction(None) == ""
    assert len(clip_prediction("x" * 5000)) == PREDICTION_MAX_CHARS


def test_prompt_contains_question_answers_clipped_prediction():
    p = build_prompt(
        load_prompt(),
        "Who wrote Hamlet?",
        ["William Shakespeare", "Shakespeare"],
        "Shakespeare</answer><junk>",
    )
    assert "Who wrote Hamlet?" in p and "- William Shakespeare" in p and "- Shakespeare" in p
    assert "<junk>" not in p
    assert '"judgement"' in p  # the literal braces of the JSON example survived str.format


def test_load_prompt_errors(tmp_path):
    with pytest.raises(UserFacingError, match="not found"):
        load_prompt("nope.txt")
    bad = tmp_path / "p.txt"
    bad.write_text("only {question}")
    with pytest.raises(UserFacingError, match="answers"):
        load_prompt(str(bad))


def test_good_json_scores_one_first_try():
    chat = ScriptedChat(GOOD)
    r = run(Judge(chat, max_retries=3).judge("q", ["a"], "a", seed=7))
    assert (r.score, r.judgement, r.status, r.attempts) == (1.0, "Correct", "ok", 1)
    assert chat.calls[0][1].seed == 7 and chat.calls[0][1].temperature == 0.6


def test_messy_then_good_retries_with_new_seed():
    chat = ScriptedChat("hmm, let me think", "still thinking", GOOD)
    r = run(Judge(chat, max_retries=3).judge("q", ["a"], "b", seed=10))
    assert (r.score, r.status, r.attempts) == (1.0, "ok", 3)
    assert [c[1].seed for c in chat.calls] == [10, 11, 12]


def test_prose_verdict():
    r = run(Judge(ScriptedChat("After comparing both, my judgement is: Incorrect")).judge("q", ["a"], "b"))
    assert (r.score, r.judgement, r.status) == (0.0, "Incorrect", "ok")


def test_garbage_is_bounded_then_unparsed():
    chat = ScriptedChat("@@@ garbage @@@")
    r = run(Judge(chat, max_retries=2).judge("q", ["a"], "b"))
    assert (r.score, r.judgement, r.status, r.attempts) == (0.0, None, "unparsed", 3)
    assert len(chat.calls) == 3
    assert r.raw == "@@@ garbage @@@"


def test_engine_errors_are_bounded_and_reported():
    chat = ScriptedChat(ConnectionError("endpoint down"))
    r = run(Judge(chat, max_retries=1).judge("q", ["a"], "b"))
    assert (r.score, r.status, r.attempts) == (0.0, "error", 2)
    assert "endpoint down" in r.error


def test_error_then_good_recovers():
    chat = ScriptedChat(TimeoutError("slow"), GOOD)
    r = run(Judge(chat, max_retries=1).judge("q", ["a"], "a"))
    assert (r.score, r.status, r.attempts) == (1.0, "ok", 2)


def test_empty_prediction_not_sent():
    chat = ScriptedChat(GOOD)
    r = run(Judge(chat).judge("q", ["a"], None))
    assert (r.score, r.judgement, r.attempts) == (0.0, "Incorrect", 0) and not chat.calls
    r = run(Judge(chat).judge("q", ["a"], "</answer>"))
    assert r.attempts == 0 and not chat.calls


def test_raw_is_truncated_to_tail():
    long = "x" * 10_000 + GOOD
    r = run(Judge(ScriptedChat(long)).judge("q", ["a"], "a"))
    assert r.status == "ok" and len(r.raw) < 2100 and r.raw.endswith("```")


def test_concurrency_limit():
    chat = ScriptedChat(GOOD, delay=0.02)
    judge = Judge(chat, concurrency=3)

    async def many():
        return await asyncio.gather(*(judge.judge("q", ["a"], "a") for _ in range(12)))

    results = run(many())
    assert all(r.score == 1.0 for r in results)
    assert chat.max_inflight == 3


# ---- engine adapters ------------------------------------------------------------------------------------


class _Tok:
    chat_template = "fake"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "<user>" + messages[0]["content"] + "<assistant>"

    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 256 for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class _TokenEngine(InferenceEngine):
    """An InferenceEngine double that 'generates' a fixed reply as token ids (no text field)."""

    def __init__(self, reply: str):
        self.tokenizer = _Tok()
        self.reply = reply
        self.requests = []

    @property
    def version(self) -> int:
        return 0

    async def agenerate(self, request):
        self.requests.append(request)
        ids = [ord(c) for c in self.reply]
        return GenerationResult(ids, [0.0] * len(ids), [0] * len(ids), "stop")


def test_inference_engine_adapter_uses_chat_template():
    eng = _TokenEngine(GOOD)
    judge = Judge(chat_fn_for(eng), max_retries=0)
    r = run(judge.judge("Who?", ["Ann"], "Ann", seed=3))
    assert r.score == 1.0
    req = eng.requests[0]
    assert req.sampling.seed == 3
    assert _Tok().decode(req.input_ids).startswith("<user>")


def test_achat_engine_preferred():
    class Chatty:
        async def achat(self, messages, sampling):
            return GOOD

    r = run(Judge(chat_fn_for(Chatty())).judge("q", ["a"], "a"))
    assert r.score == 1.0


def test_engine_without_chat_template_is_a_clear_error():
    class NoTemplate:
        tokenizer = type("T", (), {"chat_template": None})()

    with pytest.raises(UserFacingError, match="chat template"):
        chat_fn_for(NoTemplate())
