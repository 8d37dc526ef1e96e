"""The synthesis agent's loop, every branch driven by the scripted engine (a test double; the real engines are
exercised by the CLI test in test_run.py)."""

from __future__ import annotations

import asyncio
import json
import re

from asearcher.synth.scripted import ScriptedEngine, _fenced
from asearcher.synth.seeds import Seed

from .wiki import url


def grow(agent, seed):
    return asyncio.run(agent.grow(seed))


def page_seed(title="Alpha Station"):
    return Seed(id=f"page:{url(title)}", kind="page", url=url(title))


def action_rule(*sequence):
    """choose_action replies: the given actions in order (the last repeated)."""
    return [_fenced({"action": a, "reason": "test"}) for a in sequence]


def test_injection_and_fuzz_grow_the_question_and_its_evidence(make_agent, synth_cfg):
    eng = ScriptedEngine({"choose_action": action_rule("inject", "fuzz", "inject")})
    rec = grow(make_agent(eng, synth_cfg(max_turns=4)), page_seed())
    assert rec.status == "done", rec.edits
    assert [(e.action, e.outcome) for e in rec.edits] == [
        ("seed", "accepted"), ("inject", "accepted"), ("fuzz", "accepted"), ("inject", "accepted"),
    ]  # fmt: skip
    assert [(v.action, v.injections, v.fuzzes, v.statements) for v in rec.variants] == [
        ("seed", 0, 0, 1), ("inject", 1, 0, 2), ("fuzz", 1, 1, 2), ("inject", 2, 1, 3),
    ]  # fmt: skip
    # each injection followed a link of the pages in play to a page not visited before, and brought it in
    assert rec.relevant[0].url == url("Alpha Station")
    assert len({p.url for p in rec.relevant}) == len(rec.relevant) == 3
    assert {p.url for p in rec.relevant[1:]} <= set(rec.relevant[0].links) | set(rec.relevant[1].links)
    assert rec.question == rec.variants[-1].question and rec.answer == rec.variants[0].answer
    # the rewrite prompt saw the current question, and the answer never changed
    compose = [t for n, t in eng.log if n == "compose_qa"]
    assert rec.variants[1].question.startswith(re.search(r"Current question: (.*)", compose[0]).group(1))
    assert all(v.no_tool_correct == 0 and v.n == 3 for v in rec.variants)
    assert rec.calls["reasoner.direct_answer"] == 3 * 4 and rec.calls["instruct.judge"] == 3 * 4


def test_exit_is_offered_only_after_a_variant_no_tool_solver_failed_on(make_agent, synth_cfg):
    solved = {"direct_answer": lambda text, s: "<answer>Alpha Station</answer>",
              "judge": _fenced({"judgement": "Correct"})}  # fmt: skip
    eng = ScriptedEngine({**solved, "choose_action": action_rule("fuzz")})
    rec = grow(make_agent(eng, synth_cfg(max_turns=3)), page_seed())
    offered = [t for n, t in eng.log if n == "choose_action"]
    assert offered and all("exit" not in re.search(r"one of: ([^)]*)", t).group(1) for t in offered)
    assert all(v.no_tool_correct == 3 for v in rec.variants)

    eng = ScriptedEngine({"choose_action": action_rule("exit")})  # the seed is 0/3 already: exit is allowed
    rec = grow(make_agent(eng, synth_cfg(max_turns=5)), page_seed())
    assert [e.action for e in rec.edits] == ["seed", "exit"]
    offered = [t for n, t in eng.log if n == "choose_action"]
    assert len(offered) == 1 and "exit" in re.search(r"one of: ([^)]*)", offered[0]).group(1)


def test_a_covered_fact_is_skipped_and_a_changed_answer_is_rejected(make_agent, synth_cfg):
    eng = ScriptedEngine(
        {
            "choose_action": action_rule("inject", "fuzz"),
            "check_cover": [_fenced({"covered": True}), _fenced({"covered": False})],
            "fuzz": _fenced(
                {"question": "Something else entirely?", "answer": "Another answer", "changed": "x"}
            ),
        }
    )
    rec = grow(make_agent(eng, synth_cfg(max_turns=3)), page_seed())
    assert [(e.action, e.outcome, e.reason) for e in rec.edits[1:]] == [
        ("inject", "rejected", "fact_covered"), ("fuzz", "rejected", "answer_changed"),
    ]  # fmt: skip
    assert len(rec.variants) == 1 and eng.calls["compose_qa"] == 0  # a covered fact is never composed
    assert eng.calls["check_valid"] == 1  # rejected candidates are never verified


def test_verification_rejects_invalid_and_ambiguous_questions(make_agent, synth_cfg):
    eng = ScriptedEngine(
        {
            "choose_action": action_rule("fuzz"),
            "check_valid": [
                _fenced({"valid": True}),
                _fenced({"valid": False, "reason": "joined"}),
                _fenced({"valid": True}),
            ],  # fmt: skip
            "check_alternative": [_fenced({"alternative": False})] * 1 + [_fenced({"alternative": True})],
        }
    )
    rec = grow(make_agent(eng, synth_cfg(max_turns=3, n_direct=2)), page_seed())
    assert [(e.outcome, e.reason) for e in rec.edits] == [
        ("accepted", ""), ("rejected", "invalid"), ("rejected", "not_unique"),
    ]  # fmt: skip
    # uniqueness checks each distinct wrong answer once (both no-tool answers are the same string here)
    assert eng.calls["check_alternative"] == 2


def test_a_seed_that_fails_verification_is_rejected_whole(make_agent, synth_cfg):
    eng = ScriptedEngine({"check_valid": _fenced({"valid": False, "reason": "no"})})
    rec = grow(make_agent(eng, synth_cfg()), page_seed())
    assert rec.status == "rejected" and rec.reason == "seed_invalid" and not rec.variants
    assert eng.calls["choose_action"] == 0


def test_malformed_replies_are_retried_then_rejected_with_the_reason(make_agent, synth_cfg):
    # the first choose_action reply has no JSON, the retry is fine: the run goes on
    eng = ScriptedEngine({"choose_action": ["I would like to fuzz.", *action_rule("fuzz")]})
    rec = grow(make_agent(eng, synth_cfg(max_turns=2, max_retries=1)), page_seed())
    assert [e.outcome for e in rec.edits] == ["accepted", "accepted"] and eng.calls["choose_action"] == 2

    # always malformed: each turn is rejected after 1 + max_retries calls, the seed itself survives
    eng = ScriptedEngine({"choose_action": _fenced({"verb": "fuzz"}), "fuzz": "no json here"})
    rec = grow(make_agent(eng, synth_cfg(max_turns=3, max_retries=2)), page_seed())
    assert [e.reason for e in rec.edits[1:]] == ["choose_action:bad_shape"] * 2
    assert eng.calls["choose_action"] == 2 * 3

    # an action that is not offered, and a fuzz reply without JSON
    eng = ScriptedEngine({"choose_action": action_rule("brainstorm", "fuzz"), "fuzz": "no json here"})
    rec = grow(make_agent(eng, synth_cfg(max_turns=3, max_retries=0)), page_seed())
    assert [e.reason for e in rec.edits[1:]] == ["unknown_action", "fuzz:no_json"]


def test_engine_errors_are_bounded_and_counted(make_agent, synth_cfg):
    eng = ScriptedEngine({"summarize_page": [ConnectionError("endpoint down")]})
    agent = make_agent(eng, synth_cfg(max_retries=2))
    rec = grow(agent, page_seed())
    assert rec.status == "rejected" and rec.reason == "summarize_page:call_error"
    assert eng.calls["summarize_page"] == 3 and agent.instruct.failures["summarize_page:call_error"] == 1

    # a failed no-tool answer counts as a wrong answer, it does not stop the seed
    eng = ScriptedEngine({"direct_answer": [TimeoutError("slow"), "<answer>x</answer>"]})
    rec = grow(make_agent(eng, synth_cfg(max_turns=1, n_direct=3)), page_seed())
    assert rec.status == "done" and rec.variants[0].no_tool_correct == 0


def test_injection_needs_an_unseen_link(make_agent, synth_cfg):
    eng = ScriptedEngine({"choose_action": action_rule("inject")})
    rec = grow(make_agent(eng, synth_cfg(max_turns=3)), page_seed("Epsilon Hills"))
    assert [e.reason for e in rec.edits[1:]] == ["no_unseen_link"] * 2
    assert eng.calls["link_qa"] == 0


def test_pages_are_extracted_once_across_seeds(make_agent, synth_cfg):
    eng = ScriptedEngine({"choose_action": action_rule("inject")})
    agent = make_agent(eng, synth_cfg(max_turns=3))

    async def both():
        return await asyncio.gather(
            agent.grow(page_seed("Alpha Station")), agent.grow(page_seed("Beta Town"))
        )

    recs = asyncio.run(both())
    visited = {p.url for r in recs for p in r.relevant}
    assert eng.calls["summarize_page"] == len(visited) == eng.calls["extract_points"]


class FakeRetrieval:
    """Stands in for the retrieval client (the real one is used in test_run.py)."""

    def __init__(self, hits):
        self.hits = hits
        self.queries = []

    async def aretrieve(self, queries, topk=5, return_scores=False):
        self.queries += queries
        return [self.hits for _ in queries]


def test_qa_seed_with_and_without_statements(make_agent, synth_cfg):
    seed = Seed(id="qa:1", kind="qa", question="Who founded Beta Town?", answer="Delta Smith",
                statements=["Beta Town was founded by Delta Smith."], urls=[url("Beta Town")])  # fmt: skip
    eng = ScriptedEngine({"choose_action": action_rule("inject")})
    rec = grow(make_agent(eng, synth_cfg(max_turns=2)), seed)
    assert rec.status == "done" and rec.variants[0].question == seed.question
    assert rec.relevant[0].url == url("Beta Town") and rec.edits[1].outcome == "accepted"

    hits = [
        {
            "id": "9",
            "url": url("Beta Town"),
            "contents": '"Beta Town"\nA town. It was founded by Delta Smith in 1820.',
        }
    ]
    retrieval = FakeRetrieval(hits)
    bare = Seed(id="qa:2", kind="qa", question="Who founded Beta Town?", answer="Delta Smith")
    rec = grow(make_agent(ScriptedEngine(), synth_cfg(max_turns=1), retrieval), bare)
    assert retrieval.queries == [bare.question]
    assert rec.statements == ["Beta Town: It was founded by Delta Smith in 1820."]
    assert [p.url for p in rec.relevant] == [url("Beta Town")]

    rec = grow(make_agent(ScriptedEngine(), synth_cfg(), FakeRetrieval([])), bare)
    assert rec.status == "rejected" and rec.reason == "no_support"
    rec = grow(make_agent(ScriptedEngine(), synth_cfg()), bare)
    assert rec.status == "rejected" and rec.reason == "no_support"


def test_selection_keeps_tool_needing_edited_variants_latest_first(make_agent, synth_cfg):
    # every other no-tool answer is right: some variants need tools, some do not
    answers = iter(["<answer>RIGHT</answer>", "<answer>nope</answer>"] * 10)
    judge = lambda text, s: _fenced({"judgement": "Correct" if "RIGHT" in text else "Incorrect"})  # noqa: E731
    eng = ScriptedEngine(
        {"choose_action": action_rule("fuzz"), "direct_answer": lambda t, s: next(answers), "judge": judge}
    )
    rec = grow(make_agent(eng, synth_cfg(max_turns=6, n_direct=1)), page_seed())
    edited = [v for v in rec.variants if v.action != "seed"]
    assert len(edited) == 5 and [v.no_tool_correct for v in rec.variants] == [1, 0, 1, 0, 1, 0]
    picked = rec.selected(2)
    assert [v.turn for v in picked] == [5, 3] and all(v.needs_tools for v in picked)
    assert [v.turn for v in rec.selected(10)] == [5, 3, 1]
    from asearcher.synth.records import SeedRecord, training_rows

    row = json.loads(json.dumps(rec.to_dict()))
    assert SeedRecord.from_dict(row).to_dict() == rec.to_dict()
    rows = training_rows([rec], 2)
    assert [r["question"] for r in rows] == [v.question for v in picked]
    assert all(r["answer"] == [rec.answer] and r["direct_gen_acc"] == "0/1" for r in rows)
