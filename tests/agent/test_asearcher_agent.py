"""AsearcherAgent end to end with the scripted engine: tools, read turns, limits, token-in token-out records."""

from __future__ import annotations

import asyncio
import json
import random

from asearcher.agent import make_agent
from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.config import AgentConfig
from asearcher.llm.engine import SamplingParams
from tests.agent.doubles import EOS, FakeTools, ScriptedEngine, make_tokenizer

DOCS = [
    {
        "id": "1",
        "url": "https://en.wikipedia.org/w/index.php?title=Hamlet",
        "contents": '"Hamlet"\nHamlet is a tragedy written by William Shakespeare around 1600.',
    },
    {
        "id": "2",
        "url": "https://en.wikipedia.org/w/index.php?title=Macbeth",
        "contents": '"Macbeth"\nMacbeth is a tragedy by William Shakespeare.',
    },
]
PAGE_URL = "https://en.wikipedia.org/w/index.php?title=Hamlet"
PAGE = "".join(f"Sentence number {i:04d} about Hamlet. " for i in range(80))  # ~2.5k chars


def run(cfg: AgentConfig, outputs, tools=None, engine_kw=None, **kw) -> tuple[Trajectory, ScriptedEngine]:
    tok = make_tokenizer()
    engine = ScriptedEngine(tok, outputs, **(engine_kw or {}))
    agent = make_agent(cfg, tok)
    traj = asyncio.run(
        agent.run(
            qid="q1",
            question="Who wrote Hamlet?",
            answers=["William Shakespeare"],
            engine=engine,
            tools=tools or FakeTools(DOCS, {PAGE_URL: PAGE}),
            sampling=SamplingParams(temperature=0.6, seed=7),
            **kw,
        )
    )
    return traj, engine


def starts_with(ids, prefix) -> bool:
    return ids[: len(prefix)] == prefix


def test_search_read_answer():
    traj, engine = run(
        AgentConfig(),
        [
            "I should search for the play.\n</think>\n<search> Hamlet tragedy </search> trailing text never kept",
            "Doc 1 says Shakespeare wrote it.\n</think>",
            "\n<answer> William Shakespeare </answer>",
        ],
    )
    assert traj.finish == "answer" and traj.prediction == "William Shakespeare"
    kinds = [(e.type, getattr(e, "purpose", getattr(e, "tool", None))) for e in traj.events]
    assert kinds == [("llm", "act"), ("tool", "search"), ("llm", "read"), ("llm", "act")]
    act, read, final = traj.llm_calls
    # stop strings per turn kind and eos/pad as stop ids
    assert engine.requests[0].sampling.stop == ["</search>", "</access>", "</answer>"]
    assert engine.requests[1].sampling.stop == ["</think>"]
    tok = make_tokenizer()
    assert {tok.eos_token_id, tok.pad_token_id} <= set(engine.requests[0].sampling.stop_token_ids)
    assert act.output_text.endswith("</search>")  # cut at the stop string, which is kept
    # the read prompt shows the formatted results and opens a think block
    assert engine.prompts[1].endswith("\n<think>\n")
    assert f"<information>\n[Doc 1]({DOCS[0]['url']}):\n{DOCS[0]['contents']}" in engine.prompts[1]
    # token-in, token-out: append-only history => exact shared prefixes, exact ids recorded
    assert starts_with(read.input_ids, act.input_ids + act.output_ids)
    assert final.input_ids == read.input_ids + read.output_ids
    for call, req in zip(traj.llm_calls, engine.requests, strict=False):
        assert call.input_ids == req.input_ids
        assert len(call.output_logprobs) == len(call.output_ids) == len(call.output_versions)
        assert set(call.output_versions) == {3}
    tool = traj.tool_calls[0]
    assert tool.ok and tool.argument == "Hamlet tragedy" and len(tool.result) == 2
    assert traj.stats()["searches"] == 1 and traj.stats()["turns"] == 3
    assert traj.prompt_hash and traj.seed == 7 and traj.meta["valid_instruction"] is False


def test_trajectory_json_round_trip():
    traj, _ = run(AgentConfig(), ["<search> Hamlet </search>", "ok</think>", "<answer> x </answer>"])
    d = json.loads(json.dumps(traj.to_dict()))
    back = Trajectory.from_dict(d)
    assert back.to_dict() == traj.to_dict()
    assert isinstance(back.events[0], LLMCall) and isinstance(back.events[1], ToolCall)


def test_access_reads_chunks_and_keeps_stubs():
    cfg = AgentConfig(page_chunk_chars=1000, page_max_chars=2200, page_stub_chars=40, max_new_tokens=64)
    traj, engine = run(
        cfg,
        [
            f"Open the page.\n</think>\n<access> {PAGE_URL} </access>",
            "chunk one noted</think>",
            "chunk two noted</think>",
            "chunk three noted</think>",
            "<answer> William Shakespeare </answer>",
        ],
    )
    assert traj.finish == "answer"
    purposes = [c.purpose for c in traj.llm_calls]
    assert purposes == ["act", "read", "read", "read", "act"]
    assert traj.tool_calls[0].tool == "access" and traj.tool_calls[0].result == PAGE
    chunks = [PAGE[:1000], PAGE[1000:2000], PAGE[2000:2200]]
    for k, (prompt, chunk) in enumerate(zip(engine.prompts[1:4], chunks, strict=False), start=1):
        assert f">>>> Page {k} >>>>\n\n{chunk}\n</information>\n<think>\n" in prompt
        # earlier chunks appear only as stubs
        for j in range(k - 1):
            assert chunks[j] not in prompt and chunks[j][:40] in prompt
    assert PAGE[2200:2300] not in "".join(engine.prompts)  # cut at page_max_chars
    last = engine.prompts[4]
    assert all(c not in last for c in chunks) and "chunk three noted</think>" in last
    # a stub replaces the chunk: the next call starts a new prefix, but still after the act output
    act, r1, r2 = traj.llm_calls[:3]
    assert starts_with(r1.input_ids, act.input_ids + act.output_ids)
    assert not starts_with(r2.input_ids, r1.input_ids + r1.output_ids)
    assert starts_with(r2.input_ids, act.input_ids + act.output_ids)
    assert starts_with(traj.llm_calls[4].input_ids, r2.input_ids[: len(act.input_ids)])


def test_missing_page_and_tool_failures_become_observations():
    traj, engine = run(
        AgentConfig(),
        [
            "<access> https://nowhere </access>",
            "nothing there</think>",
            "<answer> x </answer>",
        ],
    )
    assert traj.finish == "answer" and traj.tool_calls[0].ok and traj.tool_calls[0].result is None
    assert "No content could be found for this URL." in engine.prompts[1]

    traj, engine = run(
        AgentConfig(),
        ["<search> Hamlet </search>", "failed</think>", "<answer> x </answer>"],
        tools=FakeTools(DOCS, fail={"search"}),
    )
    assert traj.finish == "answer"
    t = traj.tool_calls[0]
    assert not t.ok and "unreachable" in t.error and traj.stats()["searches_failed"] == 1
    assert "The search failed" in engine.prompts[1]


def test_invalid_action_feedback_and_continue():
    traj, engine = run(
        AgentConfig(allow_access=False),
        [
            "<search>   </search>",
            "<access> http://x </access>",
            "<answer> William Shakespeare </answer>",
        ],
    )
    assert traj.finish == "answer" and traj.meta["invalid_actions"] == 2
    assert "the <search> tag is empty" in engine.prompts[1]
    assert "the access action is not available here" in engine.prompts[2]
    assert "<access>" not in engine.prompts[0]  # search-only template
    c = traj.llm_calls
    assert starts_with(c[1].input_ids, c[0].input_ids + c[0].output_ids)
    assert starts_with(c[2].input_ids, c[1].input_ids + c[1].output_ids)
    assert traj.tool_calls == []


def test_length_cut_continues_and_eos_ends():
    # a generation cut by max_new_tokens simply continues in the next turn (no feedback injected)
    traj, engine = run(AgentConfig(max_new_tokens=5), ["a long rambling thought " * 10, EOS])
    c = traj.llm_calls
    assert c[0].finish_reason == "length" and len(c[0].output_ids) == 5
    assert c[1].input_ids == c[0].input_ids + c[0].output_ids
    assert traj.finish == "eos" and traj.prediction is None


def test_max_turns_counts_every_generation():
    traj, engine = run(
        AgentConfig(max_turns=3),
        [f"<search> Hamlet {i} </search>" for i in range(10)] + ["read</think>"] * 10,
    )
    assert traj.finish == "max_turns" and len(traj.llm_calls) == 3
    assert [c.purpose for c in traj.llm_calls] == ["act", "read", "act"]


def test_context_budget_stops_before_overflow():
    tok = make_tokenizer()
    prompt_len = len(run(AgentConfig(max_turns=1), ["<answer> x </answer>"])[0].llm_calls[0].input_ids)
    cfg = AgentConfig(max_new_tokens=64, max_context_tokens=prompt_len + 64 + 30)
    traj, engine = run(cfg, ["<search> Hamlet </search>"] + ["notes</think>"] * 5)
    assert traj.finish == "context"
    assert len(traj.llm_calls) == 1 and len(traj.tool_calls) == 1
    for c in traj.llm_calls:
        assert len(c.input_ids) + cfg.max_new_tokens <= cfg.max_context_tokens
    assert tok is not None


def test_valid_instruction_variant_uses_the_rng():
    t_valid, e_valid = run(AgentConfig(valid_instruction_prob=1.0), ["<answer> a </answer>"])
    t_inv, e_inv = run(AgentConfig(valid_instruction_prob=0.0), ["<answer> a </answer>"])
    assert t_valid.meta["valid_instruction"] and not t_inv.meta["valid_instruction"]
    assert "The question is valid" in e_valid.prompts[0] and "the question is invalid" in e_inv.prompts[0]
    assert t_valid.prompt_hash == t_inv.prompt_hash  # both notes are part of the hash
    picks = [
        run(AgentConfig(valid_instruction_prob=0.5), ["<answer> a </answer>"], rng=random.Random(s))[0].meta[
            "valid_instruction"
        ]
        for s in range(12)
    ]
    again = [
        run(AgentConfig(valid_instruction_prob=0.5), ["<answer> a </answer>"], rng=random.Random(s))[0].meta[
            "valid_instruction"
        ]
        for s in range(12)
    ]
    assert picks == again and True in picks and False in picks


def test_engine_failure_is_recorded_not_raised():
    def boom(prompt: str) -> str:
        raise RuntimeError("engine died")

    traj, _ = run(AgentConfig(), [boom])
    assert traj.finish == "error" and "engine died" in traj.error


def test_eos_without_eos_token_and_aborted_generation():
    traj, _ = run(AgentConfig(), ["I am done." + EOS], engine_kw={"eos_in_ids": False})
    assert traj.finish == "eos" and traj.llm_calls[0].output_ids[-1] != make_tokenizer().eos_token_id
    traj, _ = run(AgentConfig(), ["<search> x </search>"], engine_kw={"finish_override": "abort"})
    assert traj.finish == "error" and "aborted" in traj.error and len(traj.llm_calls) == 1
