"""ReasoningAgent: chat-templated calls per job, notes-only history, min-search / forced-answer policy."""

from __future__ import annotations

import asyncio

from asearcher.agent import make_agent
from asearcher.agent.trajectory import Trajectory
from asearcher.config import AgentConfig
from asearcher.llm.engine import SamplingParams
from tests.agent.doubles import FakeTools, ScriptedEngine, make_tokenizer
from tests.agent.test_asearcher_agent import DOCS, PAGE, PAGE_URL


def run(cfg: AgentConfig, outputs, tools=None) -> tuple[Trajectory, ScriptedEngine]:
    tok = make_tokenizer()
    engine = ScriptedEngine(tok, outputs)
    agent = make_agent(cfg.model_copy(update={"kind": "asearcher-reasoning"}), tok)
    traj = asyncio.run(
        agent.run(
            qid="q",
            question="Who wrote Hamlet?",
            answers=["William Shakespeare"],
            engine=engine,
            tools=tools or FakeTools(DOCS, {PAGE_URL: PAGE}),
            sampling=SamplingParams(seed=1),
        )
    )
    return traj, engine


def test_min_searches_then_search_read_answer():
    traj, engine = run(
        AgentConfig(min_searches=1),
        [
            "<think>too early</think><thought>I guess.</thought><answer> Marlowe </answer>",
            "<think>secret chain of thought</think>\n<thought>Look it up.</thought>\n<search> Hamlet </search>",
            "<thought>Doc 1: Hamlet was written by William Shakespeare.</thought>",
            "<thought>Settled.</thought><answer> William Shakespeare </answer>",
        ],
    )
    assert traj.finish == "answer" and traj.prediction == "William Shakespeare"
    assert traj.meta["discarded_answers"] == ["Marlowe"]
    assert [c.purpose for c in traj.llm_calls] == ["act", "act", "read", "act"]
    # every call is one user message through the chat template
    for p in engine.prompts:
        assert p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n")
        assert p.count("<|im_start|>") == 2
    assert "<|im_end|>" in engine.requests[0].sampling.stop
    assert "required 1 searches" in engine.prompts[1]
    assert "Your latest search returned" in engine.prompts[2] and DOCS[0]["contents"] in engine.prompts[2]
    last = engine.prompts[3]
    assert "<search>Hamlet</search>" in last and "<thought>Look it up.</thought>" in last
    assert "Hamlet was written by William Shakespeare" in last
    assert "secret chain of thought" not in last  # hidden reasoning is discarded
    assert traj.llm_calls[3].input_ids == engine.requests[3].input_ids


def test_pages_read_in_chunks_with_stubs():
    cfg = AgentConfig(page_chunk_chars=1500, page_stub_chars=30)
    traj, engine = run(
        cfg,
        [
            f"<thought>Open it.</thought><access> {PAGE_URL} </access>",
            "<thought>part one</thought>",
            "<thought>part two</thought>",
            "<answer> William Shakespeare </answer>",
        ],
    )
    assert [c.purpose for c in traj.llm_calls] == ["act", "read", "read", "act"]
    assert "You opened a web page" in engine.prompts[1] and PAGE[:1500] in engine.prompts[1]
    assert PAGE[1500:] in engine.prompts[2] and PAGE[:1500] not in engine.prompts[2]
    assert PAGE[:30] + "..." in engine.prompts[2]
    assert traj.prediction == "William Shakespeare"


def test_turns_run_out_final_answer_call_with_fallback():
    traj, engine = run(
        AgentConfig(max_turns=3),
        [
            "<thought>hmm</thought> no action at all",
            "<thought>still</thought><search></search>",
            "I think the final answer is: William Shakespeare",
        ],
    )
    assert [c.purpose for c in traj.llm_calls] == ["act", "act", "answer"]
    assert traj.meta["invalid_actions"] == 2
    assert "no complete action tag" in engine.prompts[1] and "the <search> tag is empty" in engine.prompts[2]
    assert "Your research on the question below is over" in engine.prompts[2]
    assert traj.prediction == "William Shakespeare" and traj.finish == "answer"


def test_force_answer_turns_and_history_window():
    outs = [
        f"<thought>step {i} {'x' * 300}</thought><search> Hamlet {i} </search>"
        if i % 2 == 0
        else f"<thought>note {i}</thought>"
        for i in range(8)
    ] + ["<answer> W. S. </answer>"]
    cfg = AgentConfig(force_answer_turns=4, history_chars=1000, max_turns=50)
    traj, engine = run(cfg, outs)
    assert [c.purpose for c in traj.llm_calls] == ["act", "read"] * 4 + ["answer"]
    assert traj.prediction == "W. S." and traj.meta["answer_phase"] == "max_turns"
    # only the last history_chars characters of the history are shown
    final = engine.prompts[-1]
    assert "step 6" in final and "step 0 " not in final
    hist = final.split("Your research:\n```txt\n", 1)[1].split("\n```", 1)[0]
    assert len(hist) <= 1000


def test_no_answer_anywhere_gives_no_prediction():
    traj, _ = run(AgentConfig(max_turns=2), ["<thought>x</thought><search> Hamlet </search>", "nothing"])
    assert [c.purpose for c in traj.llm_calls] == ["act", "answer"]
    assert traj.prediction is None and traj.finish == "max_turns"


# ---- upstream QwQ settings (issue 9: call budget, answer phase, page chunks one per act) ------------------------
def test_context_budget_keeps_a_long_trajectory_going():
    """Upstream gives each call what the context leaves (31000 - prompt). A fixed budget of max_new_tokens inside
    the same context ends the trajectory once the prompt passes context - max_new_tokens (here after ~1 search)."""
    searches = [f"<thought>look {i}</thought><search> Hamlet {i} </search>" for i in range(6)]
    notes = [f"<thought>note {i}</thought>" for i in range(6)]
    outs = [x for pair in zip(searches, notes, strict=True) for x in pair] + [
        "<answer> William Shakespeare </answer>"
    ]
    base = dict(
        max_turns=40, max_new_tokens=1500, max_context_tokens=1600, history_chars=25000, min_call_tokens=16
    )
    traj, engine = run(AgentConfig(**base), outs)  # call_budget auto -> 'context' for this agent
    assert len(traj.llm_calls) >= 10 and traj.finish == "answer", (len(traj.llm_calls), traj.finish)
    for (
        req
    ) in engine.requests:  # each call is given exactly what the context leaves, capped at max_new_tokens
        assert req.sampling.max_new_tokens == min(1500, 1600 - len(req.input_ids))
    fixed, _ = run(AgentConfig(**base, call_budget="fixed"), outs)  # the old behaviour, kept by name
    assert fixed.finish == "context" and len(fixed.llm_calls) <= 2


def test_answer_phase_policy_offers_the_answer_only_after_enough_search_blocks():
    outs = [
        "<thought>guess</thought><answer> Marlowe </answer>",  # before the phase: set aside
        "<thought>a</thought><search> Hamlet </search>",
        "<thought>read 1</thought>",
        "<thought>b</thought><search> Hamlet author </search>",
        "<thought>read 2</thought>",
        "<thought>done</thought><answer> William Shakespeare </answer>",
    ]
    traj, engine = run(
        AgentConfig(answer_policy="answer_phase", answer_phase_docs=2, force_answer_turns=32), outs
    )
    assert traj.prediction == "William Shakespeare" and traj.meta["discarded_answers"] == ["Marlowe"]
    acts = [p for p, c in zip(engine.prompts, traj.llm_calls, strict=True) if c.purpose == "act"]
    assert all("<answer>" not in p.split("```")[-1] for p in acts[:3])  # explore prompt: no answer action
    assert "<answer>" in acts[3].split("```")[-1]  # two result blocks seen: the answer is offered
    assert "before the research was complete" in acts[1]


def test_page_chunks_one_per_later_act():
    cfg = AgentConfig(page_chunk_chars=1500, page_stub_chars=30, page_reading="one_per_act")
    outs = [
        f"<thought>Open it.</thought><access> {PAGE_URL} </access>",
        "<thought>part one</thought>",  # the first chunk is read at once
        "<thought>x</thought><search> Hamlet </search>",  # the next act comes before the second chunk
        "<thought>results</thought>",
        "<thought>part two</thought>",  # the second chunk, before the following act
        "<answer> William Shakespeare </answer>",
    ]
    traj, engine = run(cfg, outs)
    assert [c.purpose for c in traj.llm_calls] == ["act", "read", "act", "read", "read", "act"]
    assert PAGE[:1500] in engine.prompts[1] and PAGE[1500:3000] in engine.prompts[4]
    assert traj.prediction == "William Shakespeare"
