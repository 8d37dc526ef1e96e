"""SearchR1Agent: numbered <information> docs, both query forms, append-only token history, 10-turn default."""

from __future__ import annotations

import asyncio

from asearcher.agent import make_agent
from asearcher.agent.trajectory import Trajectory
from asearcher.config import AgentConfig, config_from_dict
from asearcher.llm.engine import SamplingParams
from tests.agent.doubles import EOS, FakeTools, ScriptedEngine, make_tokenizer
from tests.agent.test_asearcher_agent import DOCS


def run(cfg: AgentConfig, outputs) -> tuple[Trajectory, ScriptedEngine]:
    tok = make_tokenizer()
    engine = ScriptedEngine(tok, outputs)
    agent = make_agent(cfg, tok)
    traj = asyncio.run(
        agent.run(
            qid="q",
            question="Who wrote Hamlet?",
            answers=["William Shakespeare"],
            engine=engine,
            tools=FakeTools(DOCS),
            sampling=SamplingParams(),
        )
    )
    return traj, engine


def test_search_both_forms_then_answer_append_only():
    traj, engine = run(
        AgentConfig(kind="search-r1"),
        [
            "<think>look</think><search> Shakespeare </search>",
            "<think>again</think><|begin_of_query|> Macbeth<|end_of_query|>",
            "<think>done</think><answer> William Shakespeare </answer>",
        ],
    )
    assert traj.finish == "answer" and traj.prediction == "William Shakespeare"
    assert [t.argument for t in traj.tool_calls] == ["Shakespeare", "Macbeth"]
    assert engine.prompts[0].startswith("<|im_start|>user\nAnswer the question below.")
    assert (
        f"\n\n<information>1. {DOCS[0]['contents']}\n\n2. {DOCS[1]['contents']}\n</information>\n\n"
        in engine.prompts[1]
    )
    c = traj.llm_calls
    for a, b in zip(c, c[1:], strict=False):
        assert b.input_ids[: len(a.input_ids) + len(a.output_ids)] == a.input_ids + a.output_ids
    assert "<|end_of_query|>" in engine.requests[0].sampling.stop


def test_invalid_feedback_default_max_turns_and_eos():
    traj, engine = run(AgentConfig(kind="search-r1"), ["no tags here, just words"] * 20)
    assert traj.finish == "max_turns" and len(traj.llm_calls) == 10  # Search-R1's own default
    assert "That was not a valid action" in engine.prompts[1]
    cfg = config_from_dict({"agent": {"kind": "search-r1", "max_turns": 3}}).agent
    traj, _ = run(cfg, ["nothing"] * 5)
    assert len(traj.llm_calls) == 3
    traj, _ = run(AgentConfig(kind="search-r1"), ["I give up." + EOS])
    assert traj.finish == "eos" and traj.prediction is None
