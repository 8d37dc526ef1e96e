"""Reading model replies: the JSON the prompt asked for, or a ReplyError with a reason, never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asearcher.synth.replies import QA, Action, Covered, PageSummary, ReplyError, extract_answer, parse_reply

SHAPES = [QA, Action, Covered, PageSummary, "points"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('Sure!\n```json\n{"question": "Q?", "answer": "A"}\n```', ("Q?", "A")),
        (
            '```json\n{"question": "old"}\n```\nfixed:\n```json\n{"question": "Q?", "answer": 1934}\n```',
            ("Q?", "1934"),
        ),
        ('{"question": "Q?", "answer": "A"} and some words after', ("Q?", "A")),
        ('```\n{"question": "  Q?\\n", "answer": "A"}\n```', ("Q?", "A")),
    ],
)
def test_json_is_found_in_the_usual_shapes(text, expected):
    qa = parse_reply(text, QA)
    assert (qa.question, qa.answer) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("no json at all", "no_json"),
        ('```json\n{"question": "Q?"}\n```', "bad_shape"),
        ('```json\n{"question": "", "answer": "A"}\n```', "bad_shape"),
        ('```json\n["a list"]\n```', "bad_shape"),
        ('```json\n{"question": ["Q"], "answer": "A"}\n```', "bad_shape"),
    ],
)
def test_malformed_replies_have_a_reason(text, reason):
    with pytest.raises(ReplyError) as e:
        parse_reply(text, QA)
    assert e.value.reason == reason


def test_points_accept_a_wrapped_list_and_drop_blanks():
    assert parse_reply('```json\n{"points": ["a", " ", "b  c"]}\n```', "points") == ["a", "b c"]
    with pytest.raises(ReplyError):
        parse_reply("```json\n[]\n```", "points")


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.builds(lambda v, pre: pre + "```json\n" + json.dumps(v) + "\n```", st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                st.sampled_from(["question", "answer", "title", "summary", "action", "covered", "x"]), inner,
                max_size=4),
            max_leaves=10), st.text(max_size=30)),
    ),
    shape=st.sampled_from(SHAPES),
)  # fmt: skip
def test_any_reply_parses_or_is_a_reply_error(text, shape):
    try:
        parse_reply(text, shape)
    except ReplyError as e:
        assert e.reason in ("no_json", "bad_shape")
    assert isinstance(extract_answer(text), str)
