"""Agents against the real TransformersEngine (a random-init tiny Qwen2 on CPU): arbitrary model output never
breaks an agent, and the recorded token ids are exactly what the engine received and produced."""

from __future__ import annotations

import asyncio

import pytest

from asearcher.agent import make_agent
from asearcher.config import AgentConfig
from asearcher.llm.engine import SamplingParams
from tests.agent.doubles import FakeTools, make_tokenizer
from tests.agent.test_asearcher_agent import DOCS, PAGE, PAGE_URL

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def engine():
    te = pytest.importorskip("asearcher.llm.transformers_engine")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    eng = te.TransformersEngine(Qwen2ForCausalLM(cfg), tokenizer=tok, max_batch_size=4)
    yield eng
    asyncio.run(eng.aclose())


@pytest.mark.parametrize("kind", ["asearcher", "asearcher-reasoning", "search-r1"])
def test_agents_run_on_the_real_engine(engine, kind):
    cfg = AgentConfig(kind=kind, max_turns=3, max_new_tokens=12, max_context_tokens=4096)
    agent = make_agent(cfg, engine.tokenizer)

    async def go():
        return await asyncio.gather(
            *[
                agent.run(
                    qid="q",
                    question="Who wrote Hamlet?",
                    answers=["William Shakespeare"],
                    engine=engine,
                    tools=FakeTools(DOCS, {PAGE_URL: PAGE}),
                    sampling=SamplingParams(temperature=1.0, seed=s),
                    sample_idx=s,
                )
                for s in range(2)
            ]
        )

    for traj in asyncio.run(go()):
        assert traj.finish in ("answer", "max_turns", "eos", "context"), traj.error
        assert 1 <= len(traj.llm_calls) <= 3
        for c in traj.llm_calls:
            assert 0 < len(c.output_ids) <= 12
            assert len(c.output_logprobs) == len(c.output_ids) == len(c.output_versions)
            assert all(lp <= 0 for lp in c.output_logprobs)
        if kind != "asearcher-reasoning":  # append-only histories (no page stubs in a random run)
            calls = traj.llm_calls
            for a, b in zip(calls, calls[1:], strict=False):
                if a.purpose == b.purpose == "act" or b.purpose == "read":
                    assert b.input_ids[: len(a.input_ids) + len(a.output_ids)] == a.input_ids + a.output_ids


def test_asearcher_agent_on_the_project_tiny_model(tiny_engine):
    """The tiny model built from the mirror corpus (tests/fixtures/llm.py) with its own trained tokenizer."""
    agent = make_agent(AgentConfig(max_turns=4, max_new_tokens=16), tiny_engine.tokenizer)
    traj = asyncio.run(
        agent.run(
            qid="q",
            question="Who wrote Hamlet?",
            answers=["x"],
            engine=tiny_engine,
            tools=FakeTools(DOCS, {PAGE_URL: PAGE}),
            sampling=SamplingParams(seed=3),
        )
    )
    assert traj.finish in ("answer", "max_turns", "eos", "context"), traj.error
    tok = tiny_engine.tokenizer
    first = traj.llm_calls[0]
    assert tok.decode(first.input_ids).startswith("This is a conversation between a User and an Assistant.")
    for a, b in zip(traj.llm_calls, traj.llm_calls[1:], strict=False):
        if b.purpose == "act" and a.purpose == "act":
            assert b.input_ids[: len(a.input_ids) + len(a.output_ids)] == a.input_ids + a.output_ids


def test_scripted_agent_through_real_retrieval_server(retrieval_server):
    """Scripted model, real tools: LocalTools -> HTTP server -> Lucene BM25 over the mirror corpus and pages."""
    from asearcher.tools.local import LocalTools
    from tests.agent.doubles import ScriptedEngine

    tok = make_tokenizer()
    tools = LocalTools(retrieval_server.client(timeout_s=30, max_retries=1))
    found: dict[str, str] = {}

    def access_first_hit(prompt: str) -> str:
        url = prompt.rsplit("[Doc 1](", 1)[1].split("):", 1)[0]
        found["url"] = url
        return f"Doc 1 looks right.\n</think>\n<access> {url} </access>"

    engine = ScriptedEngine(
        tok,
        ["<search> City Bank of New York founded 1812 </search>", "noted</think>", access_first_hit]
        + ["page read</think>"] * 3
        + ["<answer> 1812 </answer>"],
    )
    cfg = AgentConfig(page_chunk_chars=4000, page_max_chars=12000, max_context_tokens=60000)
    agent = make_agent(cfg, tok)

    async def go():
        try:
            return await agent.run(
                qid="citi",
                question="When was the City Bank of New York founded?",
                answers=["1812"],
                engine=engine,
                tools=tools,
                sampling=SamplingParams(seed=0),
            )
        finally:
            await tools.aclose()

    traj = asyncio.run(go())
    assert traj.finish == "answer" and traj.prediction == "1812", (traj.finish, traj.error)
    search, access = traj.tool_calls
    assert search.ok and "Citibank" in search.result[0]["contents"]
    assert "Citibank" in engine.prompts[1] and engine.prompts[1].endswith("\n<think>\n")
    assert access.ok and access.argument == found["url"]
    if access.result:  # the page is in wiki_webpages.jsonl: its first chunk was read in a read turn
        assert access.result[:200] in engine.prompts[3]
    else:
        assert "No content could be found for this URL." in engine.prompts[3]


def test_tiny_model_agent_with_real_tools(tiny_engine, retrieval_server):
    """Real tiny model + real retrieval server: whatever the model writes, the run completes consistently."""
    from asearcher.tools.local import LocalTools

    tools = LocalTools(retrieval_server.client(timeout_s=30, max_retries=1))
    agent = make_agent(AgentConfig(kind="search-r1", max_turns=3, max_new_tokens=16), tiny_engine.tokenizer)

    async def go():
        try:
            return await agent.run(
                qid="q",
                question="Who founded Citibank?",
                answers=["Samuel Osgood"],
                engine=tiny_engine,
                tools=tools,
                sampling=SamplingParams(seed=5),
            )
        finally:
            await tools.aclose()

    traj = asyncio.run(go())
    assert traj.finish in ("answer", "max_turns", "eos", "context"), traj.error
    calls = traj.llm_calls
    for a, b in zip(calls, calls[1:], strict=False):
        assert b.input_ids[: len(a.input_ids) + len(a.output_ids)] == a.input_ids + a.output_ids
