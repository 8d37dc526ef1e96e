"""The tag parser: total on any input, upstream's last-match + priority rule, format facts."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from asearcher.agent.parsing import (
    DEFAULT_TAGS,
    SEARCH_R1_TAGS,
    Action,
    extract_tag,
    extract_think,
    fallback_answer,
    format_facts,
    parse_action,
    strip_think,
    trajectory_format_ok,
)

TAGS = [
    "<search>",
    "</search>",
    "<access>",
    "</access>",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    "<information>",
    "</information>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_query|>",
    "<|end_of_query|>",
    "<",
    ">",
    "</",
    "Assistant:",
]

pieces = st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=12)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(pieces)
def test_parse_action_is_total_and_sound(parts):
    text = "".join(parts)
    for tags in (DEFAULT_TAGS, SEARCH_R1_TAGS):
        a = parse_action(text, tags=tags, allowed=tags.keys())
        assert isinstance(a, Action)
        assert a.kind in ("search", "access", "answer", "invalid", "none")
        if a.kind in ("search", "access", "answer"):
            assert a.argument and a.argument == a.argument.strip()
            assert a.argument in text
            # the argument never spans a tag of its own kind (any of its forms)
            assert not any(t in a.argument for pair in tags[a.kind] for t in pair)
        else:
            assert a.argument == "" and a.reason
    facts = format_facts(text)
    assert facts["search_open"] == text.count("<search>")
    assert isinstance(facts["ok"], bool)
    extract_think(text)
    fallback_answer(text)
    strip_think(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30).filter(lambda s: s.strip() and "<" not in s and ">" not in s), pieces)
def test_injected_search_after_noise_is_found(query, noise):
    noise_text = "".join(noise).replace("<search>", "").replace("</search>", "")
    text = noise_text + f"<search>{query}</search>"
    a = parse_action(text)
    assert a.kind == "search" and a.argument == query.strip()


def test_last_complete_match_wins_and_priority():
    assert parse_action("<search>a</search> then <search> b </search>") == Action("search", "b")
    assert parse_action("<answer>x</answer><search>q</search>").kind == "search"  # search > answer
    assert parse_action("<access>http://u</access><answer>x</answer>") == Action("access", "http://u")
    assert parse_action("<search> q </search> <access>u</access>").argument == "q"
    # nested/repeated opening tags: the innermost complete pair
    assert parse_action("<search>a<search>b</search>").argument == "b"
    assert parse_action("<search>a</search></search>").argument == "a"
    # unbalanced: no complete pair
    assert parse_action("<search>never closed").kind == "none"
    assert parse_action("</search>closing only").kind == "none"
    assert parse_action("").kind == "none"


def test_empty_and_disallowed_arguments_are_invalid():
    a = parse_action("<search>   </search>")
    assert a.kind == "invalid" and "empty" in a.reason
    a = parse_action("<access>http://x</access>", allowed=("search", "answer"))
    assert a.kind == "invalid" and "access" in a.reason
    assert parse_action("<answer>\n</answer>").kind == "invalid"


def test_search_r1_query_form():
    assert parse_action(
        "<|begin_of_query|> capital of France<|end_of_query|>", tags=SEARCH_R1_TAGS
    ) == Action("search", "capital of France")
    # the form that ends last wins
    t = "<search>a</search> <|begin_of_query|>b<|end_of_query|>"
    assert parse_action(t, tags=SEARCH_R1_TAGS).argument == "b"


def test_huge_outputs_stay_fast_and_correct():
    big = "<search>" * 20000 + "x" * 50000 + "<answer>ok</answer>" + "</search" * 3000
    assert len(big) > 100_000
    assert parse_action(big) == Action("answer", "ok")
    many = "<search>q</search>" * 6000
    assert parse_action(many) == Action("search", "q")
    assert format_facts(many)["search_open"] == 6000


def test_stray_special_tokens():
    t = "<|im_end|><answer>Paris<|endoftext|></answer><|im_end|>"
    assert parse_action(t) == Action("answer", "Paris<|endoftext|>")


def test_think_extraction():
    assert extract_think("<think> a </think> <think> b </think> x") == "b"
    assert (
        extract_think("summary started in the prompt</think>\n<search>q</search>")
        == "summary started in the prompt"
    )
    assert extract_think("no tags") is None
    assert extract_tag("<thought> t1 </thought>", "thought") == "t1"
    assert strip_think("<think>hidden</think> visible") == " visible"
    assert strip_think("plain") == "plain"


def test_fallback_answer():
    assert fallback_answer("... <answer> 42 </answer>") == "42"
    assert fallback_answer("thinking\n<answer> Marie Curie and more text") == "Marie Curie and more text"
    assert fallback_answer("reasoning\nSo the final answer is: Lyon\nextra") == "Lyon"
    assert fallback_answer("Answer: Berlin") == "Berlin"
    assert fallback_answer("nothing here") is None


def test_format_facts():
    good = "I should look. </think>\n<search> q </search>"
    f = format_facts(good)
    assert f["ok"] and f["balanced"] and f["tool_tags"] == 1 and f["think_close"] == 1
    assert not format_facts("<search>a</search><search>b</search>")["ok"]
    bad = format_facts("Assistant: <answer>x")
    assert not bad["ok"] and not bad["balanced"] and bad["has_assistant"]
    assert "unbalanced <answer> tags" in bad["problems"]
    assert not format_facts("</think></think>")["ok"]
    assert trajectory_format_ok([good, "<answer>x</answer>"])
    assert not trajectory_format_ok([good, "assistant"])


# ---- arbitrary text with nested, unclosed and odd tags, against a naive reference (issue 10) --------------------
ODD = [
    "<search >", "<SEARCH>", "< search>", "</search", "<search", "search>", "</ search>", "<<search>>",
    "<search></search>", "<answer><search>", "</search></answer>", "<answer> </answer>", "<answer>\n</answer>",
    "<think><think>", "</think></think>", "<|begin_of_query|><|begin_of_query|>", "\n", " ", "answer", "Answer:",
    "final answer is", "**", "\u2028", "\x00", "é", "\ud800",
]  # fmt: skip
odd_pieces = st.lists(st.one_of(st.sampled_from(TAGS + ODD), st.text(max_size=8)), max_size=40)


def _ref_last(text: str, open_tag: str, close_tag: str, bad: tuple[str, ...]) -> tuple[int, str] | None:
    """Naive scan: a pair counts when the first tag of `bad` after its opening tag is its closing tag; the
    pair that ends last wins."""
    best = None
    i = text.find(open_tag)
    while i >= 0:
        start = i + len(open_tag)
        ends = [p for t in bad if (p := text.find(t, start)) >= 0]
        if ends and text.startswith(close_tag, min(ends)):
            best = (min(ends) + len(close_tag), text[start : min(ends)])
        i = text.find(open_tag, i + 1)
    return best


def _ref_action(text: str, tags, allowed) -> Action:
    for kind, pairs in tags.items():
        kind_tags = tuple({t for pair in pairs for t in pair})
        found = [m for o, c in pairs if (m := _ref_last(text, o, c, kind_tags)) is not None]
        if not found:
            continue
        arg = max(found, key=lambda m: m[0])[1].strip()
        if kind not in allowed:
            return Action("invalid", reason=f"the {kind} action is not available here")
        if not arg:
            return Action("invalid", reason=f"the <{kind}> tag is empty")
        return Action(kind, argument=arg)
    return Action("none", reason="no complete action tag was found")


@settings(max_examples=200, deadline=None)
@given(odd_pieces, st.sampled_from([("search", "access", "answer"), ("search", "answer"), ()]))
def test_parse_action_matches_a_naive_reference(parts, allowed):
    text = "".join(parts)
    for tags in (DEFAULT_TAGS, SEARCH_R1_TAGS):
        assert parse_action(text, tags=tags, allowed=allowed) == _ref_action(text, tags, allowed), text


@settings(max_examples=200, deadline=None)
@given(odd_pieces)
@example(["<answer> </answer>"])
@example(["<answer>\n</answer>"])
@example(["x\n<answer></answer>"])
def test_other_extractors_are_total_and_sound(parts):
    text = "".join(parts)
    ans = fallback_answer(text)
    assert ans is None or (ans and ans == ans.strip()), repr(ans)
    if ans is not None:
        assert "<answer>" not in ans and "</answer>" not in ans, repr(ans)
    tagged = extract_tag(text, "answer")
    if tagged:
        assert ans == tagged
    think = extract_think(text)
    assert think is None or think == think.strip()
    rest = strip_think(text)
    assert text.endswith(rest) and ("</think>" not in rest)
    facts = format_facts(text)
    assert facts["ok"] == (not facts["problems"])
    assert facts["balanced"] == all(
        text.count(f"<{t}>") == text.count(f"</{t}>") for t in ("search", "access", "answer")
    )


def test_fallback_answer_ignores_an_empty_answer_tag():
    """Found by the property test: an empty <answer> pair gave the answer "</answer>" (the closing tag taken for
    the text of an unclosed <answer>), and "<answer> </answer>" on a line of its own gave ">"."""
    assert fallback_answer("<answer> </answer>") is None
    assert fallback_answer("reasoning\n<answer>\n</answer>") is None
    assert fallback_answer("The answer is Paris.\n<answer></answer>") == "Paris."
    assert fallback_answer("<answer></answer> then <answer>Rome") == "Rome"
