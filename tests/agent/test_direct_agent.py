"""DirectAgent (the paper's "Direct" baselines): one call, no tools, the answer read with the agents' tag parser;
and its evaluation, which needs no retrieval server."""

from __future__ import annotations

import asyncio
import json

import pytest

from asearcher.agent import make_agent
from asearcher.agent.direct_agent import NoTools
from asearcher.agent.parsing import extract_tag
from asearcher.agent.trajectory import Trajectory
from asearcher.config import AgentConfig, load_config
from asearcher.llm.engine import SamplingParams
from asearcher.tools.base import ToolError
from tests.agent.doubles import EOS, FakeTools, ScriptedEngine, make_tokenizer
from tests.agent.test_asearcher_agent import DOCS

QUESTION = "Who wrote Hamlet?"


def run(cfg: AgentConfig, outputs, engine=None) -> tuple[Trajectory, ScriptedEngine, FakeTools]:
    tok = make_tokenizer()
    engine = engine or ScriptedEngine(tok, outputs)
    tools = FakeTools(DOCS)
    traj = asyncio.run(
        make_agent(cfg, tok).run(
            qid="q",
            question=QUESTION,
            answers=["William Shakespeare"],
            engine=engine,
            tools=tools,
            sampling=SamplingParams(seed=5),
        )
    )
    return traj, engine, tools


def test_one_call_without_tools_answer_from_the_tag():
    traj, engine, tools = run(
        AgentConfig(kind="direct"),
        ["<think>the playwright</think> <answer> William Shakespeare </answer> trailing words"],
    )
    assert traj.finish == "answer" and traj.prediction == "William Shakespeare"
    assert len(traj.llm_calls) == 1 and traj.tool_calls == [] and tools.calls == []
    (call,) = traj.llm_calls
    assert call.purpose == "answer" and call.output_text.endswith("</answer>")  # generation stops at the tag
    assert engine.requests[0].sampling.stop == ["</answer>"]
    # the question as a user message through the chat template, from the bundled template file
    assert engine.prompts[0].startswith(
        "<|im_start|>user\nAnswer the question below from what you already know"
    )
    assert f"Question: {QUESTION}<|im_end|>" in engine.prompts[0]
    assert traj.agent == "direct" and traj.meta["templates"]["prompt"]["path"].endswith("direct.txt")


def test_without_an_answer_tag_there_is_no_prediction():
    traj, _, _ = run(AgentConfig(kind="direct"), ["Shakespeare, I believe." + EOS])
    assert traj.finish == "eos" and traj.prediction is None
    traj, _, _ = run(AgentConfig(kind="direct", max_new_tokens=4), ["<answer> William Shakespeare </answer>"])
    assert traj.finish == "max_turns" and traj.prediction is None  # cut by the budget before the tag closed
    traj, _, _ = run(AgentConfig(kind="direct"), ["<answer>   </answer>"])
    assert traj.prediction is None  # an empty tag is no answer


def test_always_one_call_whatever_max_turns_says():
    traj, engine, _ = run(AgentConfig(kind="direct", max_turns=5), ["no tag at all" + EOS] * 5)
    assert len(engine.requests) == 1 and traj.meta["max_turns"] == 1


def test_prompt_that_does_not_fit_ends_before_any_call():
    traj, engine, _ = run(AgentConfig(kind="direct", max_new_tokens=60, max_context_tokens=64), ["x"])
    assert traj.finish == "context" and engine.requests == []


def test_own_template_changes_the_prompt_hash(tmp_path):
    default = make_agent(AgentConfig(kind="direct"), make_tokenizer())
    mine = tmp_path / "mine.txt"
    mine.write_text("Q: {question}\nA: <answer>")
    own = make_agent(AgentConfig(kind="direct", template=str(mine)), make_tokenizer())
    assert own.prompt_hash != default.prompt_hash and len(own.prompt_hash) == 64
    bad = tmp_path / "bad.txt"
    bad.write_text("{question} {history}")  # the direct agent has no history to give
    with pytest.raises(Exception, match="history"):
        make_agent(AgentConfig(kind="direct", template=str(bad)), make_tokenizer())


def test_engine_failure_is_recorded_not_raised():
    class Broken(ScriptedEngine):
        async def agenerate(self, request):
            raise RuntimeError("engine down")

    traj, _, _ = run(AgentConfig(kind="direct"), [], engine=Broken(make_tokenizer(), []))
    assert traj.finish == "error" and "engine down" in traj.error


def test_no_tools_backend_refuses_every_call():
    async def go():
        tools = NoTools()
        with pytest.raises(ToolError):
            await tools.search("q", 3)
        with pytest.raises(ToolError):
            await tools.access("https://example.org")

    asyncio.run(go())


# ---- the real tiny model -------------------------------------------------------------------------------------------
def test_direct_agent_on_the_project_tiny_model(tiny_engine):
    tok = tiny_engine.tokenizer
    agent = make_agent(AgentConfig(kind="direct", max_new_tokens=16, max_context_tokens=1024), tok)

    async def go():
        return await asyncio.gather(
            *[
                agent.run(
                    qid="q",
                    question=QUESTION,
                    answers=["x"],
                    engine=tiny_engine,
                    tools=NoTools(),
                    sampling=SamplingParams(temperature=1.0, seed=s),
                    sample_idx=s,
                )
                for s in range(3)
            ]
        )

    for traj in asyncio.run(go()):
        assert traj.finish in ("answer", "eos", "max_turns"), traj.error
        (call,) = traj.llm_calls
        assert call.input_ids == agent.chat_prompt_ids(
            agent.templates["prompt"].render(question=QUESTION).strip()
        )
        assert 0 < len(call.output_ids) <= 16
        assert len(call.output_logprobs) == len(call.output_ids) and all(
            lp <= 0 for lp in call.output_logprobs
        )
        assert traj.prediction == extract_tag(call.output_text, "answer")


def test_direct_evaluation_needs_no_retrieval_server(tmp_path, tiny_model_dir, mirror_dir, monkeypatch):
    """`asearcher eval` of a direct agent with the real tiny model: no server, setting direct-notools, a card that
    names no tools, one LLM call per sample."""
    from asearcher.cli import main
    from asearcher.eval.run import default_setting

    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL", raising=False)
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)
    sets = ["agent.kind=direct", "agent.max_new_tokens=16", "agent.max_context_tokens=1024", "eval.k=2",
            f"models={{tiny: {{kind: transformers, model: {tiny_model_dir}}}}}", f"results_dir={tmp_path}"]  # fmt: skip
    assert default_setting(load_config(None, sets)) == "direct-notools"
    out = tmp_path / "out"
    rc = main(["eval", "--no-progress", "--model", "tiny", "--benchmark", "Bamboogle", "--max-samples", "2",
               "--releases", str(mirror_dir), "--output", str(out), *[a for s in sets for a in ("--set", s)]])  # fmt: skip
    assert rc == 0
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["n"] == 2 and agg["k"] == 2 and agg["errors"] == 0
    card = agg["protocol"]
    assert card["tools"] == {"backend": "none"} and card["retriever"] == {"backend": "none"}
    assert card["agent"]["kind"] == "direct" and card["search_backend"] == "none"
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and all(
        s["stats"]["turns"] == 1 and s["stats"]["searches"] == 0 for s in samples
    )
