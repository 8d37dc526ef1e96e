"""The default judge prompt asks upstream's question with upstream's verdict format and no further rules; the
stricter prompt stays available by name; the protocol card names the prompt that ran."""

from __future__ import annotations

import hashlib
import re

import pytest

from asearcher.eval.judge import (
    DEFAULT_PROMPT,
    STRICT_PROMPT,
    Judge,
    build_prompt,
    load_prompt,
    parse_verdict,
)

# sha256 of asearcher/eval/prompts/judge.txt before the default changed: the strict prompt is that text, unchanged
STRICT_SHA256 = "2c623fd4f1ba15c9008ab5d38d8777906efb8f5557b81b48cd4cd2ccdc83c42a"

# rules of the strict prompt that upstream's judge does not have
STRICT_RULES = ("vaguer", "broader", "several candidates", "contradict", "Reject")


def test_default_prompt_asks_upstreams_question():
    assert DEFAULT_PROMPT == "judge.txt"
    text = load_prompt()
    # the question: is the predicted answer equivalent to the labeled answer (given the question)?
    assert re.search(r"Is the predicted answer equivalent to the labeled answer\?", text)
    # the verdict format: a ```json block with a rationale and a judgement of "Correct" or "Incorrect"
    assert "```json" in text and '"rationale"' in text and '"judgement"' in text
    assert '"Correct"' in text and '"Incorrect"' in text
    # and nothing more: none of the strict prompt's rejection rules
    for rule in STRICT_RULES:
        assert rule.lower() not in text.lower(), rule


def test_strict_prompt_is_kept_by_name():
    text = load_prompt(STRICT_PROMPT)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == STRICT_SHA256
    for rule in STRICT_RULES:
        assert rule.lower() in text.lower(), rule


@pytest.mark.parametrize("name", [DEFAULT_PROMPT, STRICT_PROMPT])
def test_rendered_prompts_and_their_verdicts(name):
    p = build_prompt(
        load_prompt(name), "Who wrote Hamlet?", ["William Shakespeare", "Shakespeare"], "Shakespeare"
    )
    assert "Who wrote Hamlet?" in p and "- William Shakespeare" in p and "Shakespeare" in p
    assert "{{" not in p  # literal braces of the JSON example were unescaped by str.format
    # a reply in the format the prompt asks for is read
    reply = 'They match.\n```json\n{"rationale": "same person", "judgement": "Correct"}\n```'
    assert parse_verdict(reply) == ("Correct", "json_block")


async def _never(messages, sampling):  # pragma: no cover - describe() makes no call
    raise AssertionError


@pytest.mark.parametrize("name", [DEFAULT_PROMPT, STRICT_PROMPT])
def test_describe_names_the_prompt_and_its_hash(name, tmp_path):
    d = Judge(_never, prompt=name).describe()
    assert d["prompt"] == name
    assert d["prompt_sha256"] == hashlib.sha256(load_prompt(name).encode("utf-8")).hexdigest()
    own = tmp_path / "mine.txt"
    own.write_text("{question} {answers} {prediction}")
    assert Judge(_never, prompt=str(own)).describe()["prompt"] == str(own)
