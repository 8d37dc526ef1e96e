"""Evaluation runs its own agent settings (`eval.agent`, default: upstream's evaluation protocol per agent kind),
not the training-time ones, and the protocol card records them together with the judge prompt."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

from asearcher.cli import main
from asearcher.config import load_config
from asearcher.config.eval import UPSTREAM_EVAL_AGENT, EvalAgentConfig
from asearcher.errors import UserFacingError
from asearcher.eval.run import eval_agent_config
from tests.agent.doubles import FakeTools, ScriptedEngine, make_tokenizer

NOTES = resources.files("asearcher.agent").joinpath("prompts")
VALID_NOTE = NOTES.joinpath("asearcher_note_valid.txt").read_text(encoding="utf-8").strip()
INVALID_NOTE = NOTES.joinpath("asearcher_note_invalid_allowed.txt").read_text(encoding="utf-8").strip()


def test_upstream_defaults_per_agent_kind():
    # paper-notes §2.2 (eval prompt: the question is valid), §2.5 (64 / 128 + force 32 / 10 turns), §6.4 (4096 a call)
    base = eval_agent_config(load_config(None, ["agent.valid_instruction_prob=0.3", "agent.max_turns=32"]))
    assert (base.valid_instruction_prob, base.max_turns, base.max_new_tokens) == (1.0, 64, 4096)
    qwq = eval_agent_config(
        load_config(
            None,
            [
                "agent.kind=asearcher-reasoning",
                "agent.max_new_tokens=31000",
                "agent.max_context_tokens=32000",
            ],
        )
    )
    assert (qwq.max_turns, qwq.force_answer_turns, qwq.max_new_tokens) == (128, 32, 31000)
    r1 = eval_agent_config(load_config(None, ["agent.kind=search-r1"]))
    assert (r1.max_turns, r1.max_new_tokens) == (10, 4096)
    assert set(UPSTREAM_EVAL_AGENT) == {"asearcher", "asearcher-reasoning", "search-r1"}


def test_eval_agent_keys_win_and_agent_keys_stay():
    cfg = load_config(
        None,
        [
            "agent.topk=3",
            "agent.allow_access=false",
            "eval.agent.max_turns=7",
            "eval.agent.valid_instruction_prob=0.5",
        ],
    )
    a = eval_agent_config(cfg)
    assert (a.max_turns, a.valid_instruction_prob, a.max_new_tokens) == (7, 0.5, 4096)
    assert (a.topk, a.allow_access) == (3, False)  # what evaluation does not set comes from `agent`
    assert (
        cfg.agent.max_turns == 32 and cfg.agent.valid_instruction_prob == 0.0
    )  # the training section is untouched


def test_defaults_agent_evaluates_as_trained():
    cfg = load_config(None, ["agent.valid_instruction_prob=0.3", "eval.agent.defaults=agent"])
    a = eval_agent_config(cfg)
    assert a == cfg.agent
    # Search-R1 reads its 10-turn default from an unset max_turns: it stays unset
    r1 = EvalAgentConfig(defaults="agent").apply(load_config(None, ["agent.kind=search-r1"]).agent)
    assert "max_turns" not in r1.model_fields_set


def test_unknown_eval_agent_key_is_an_error():
    from asearcher.config import ConfigError

    with pytest.raises(ConfigError, match="eval.agent.max_turn"):
        load_config(None, ["eval.agent.max_turn=3"])


def test_budget_that_cannot_fit_the_context_is_a_clear_error():
    cfg = load_config(None, ["agent.max_context_tokens=2048"])  # upstream's 4096 a call cannot fit
    with pytest.raises(UserFacingError, match=r"eval.agent.max_new_tokens.*agent.max_context_tokens"):
        eval_agent_config(cfg)
    assert eval_agent_config(
        load_config(None, ["agent.max_context_tokens=2048", "eval.agent.max_new_tokens=64"])
    )


class _Judge:
    """A chat function for the judge: always a parseable Correct verdict."""

    async def __call__(self, messages, sampling):
        return '```json\n{"rationale": "same", "judgement": "Correct"}\n```'


@pytest.mark.parametrize("judge_prompt", ["judge.txt", "judge_strict.txt"])
def test_eval_runs_the_eval_agent_and_the_card_records_it(tmp_path, monkeypatch, judge_prompt):
    """`asearcher eval` end to end with a scripted engine and in-memory tools: the training config mixes prompt
    variants (valid_instruction_prob 0.3) and allows 2 turns of 32 tokens; evaluation uses the valid-question prompt
    on every sample, upstream's turn limit and budget, and the card says so."""
    import asearcher.eval.judge as judge_mod
    import asearcher.eval.run as run_mod
    import asearcher.llm.factory as factory

    bench = tmp_path / "releases" / "ASearcher-test-data" / "Bamboogle"
    bench.mkdir(parents=True)
    rows = [{"id": str(i), "question": f"Question number {i}?", "answer": "Paris"} for i in range(6)]
    (bench / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    engine = ScriptedEngine(make_tokenizer(), [lambda p: "<think> x </think> <answer> Paris </answer>"] * 100)
    monkeypatch.setattr(factory, "make_engine", lambda cfg, **kw: engine)
    monkeypatch.setattr(run_mod, "make_tools", lambda cfg, record_dir=None: FakeTools())
    monkeypatch.setattr(  # the judge's engine is a scripted chat function; the prompt comes from the config
        judge_mod,
        "make_judge",
        lambda cfg: judge_mod.Judge(
            _Judge(), model=cfg.model, max_retries=cfg.max_retries, prompt=cfg.prompt
        ),
    )
    out = tmp_path / "out"
    argv = [
        "eval",
        "--model",
        "m",
        "--benchmark",
        "Bamboogle",
        "--releases",
        str(tmp_path / "releases"),
        "--output",
        str(out),
        "--no-progress",
        "--set",
        f"results_dir={tmp_path}",
        "--set",
        "agent.valid_instruction_prob=0.3",
        "--set",
        "agent.max_turns=2",
        "--set",
        "agent.max_new_tokens=32",
        "--set",
        "eval.k=2",
        "--set",
        "eval.judge.enabled=true",
        "--set",
        f"eval.judge.prompt={judge_prompt}",
    ]
    assert main(argv) == 0
    agg = json.loads((out / "aggregate.json").read_text())
    assert (
        agg["errors"] == 0 and agg["metrics"]["em"]["mean"] == 1.0 and agg["metrics"]["judge"]["mean"] == 1.0
    )

    # every one of the 12 trajectories was told the question is valid; none got the invalid-question note
    assert len(engine.prompts) == 12
    assert all(VALID_NOTE in p and INVALID_NOTE not in p for p in engine.prompts)
    assert {r.sampling.max_new_tokens for r in engine.requests} == {4096}
    trajs = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert {t["trajectory"]["meta"]["prompt_variant"] for t in trajs} == {"valid"}

    card = agg["protocol"]
    assert card == json.loads((out / "protocol.json").read_text())
    assert card["agent"]["valid_instruction_prob"] == 1.0
    assert card["agent"]["max_turns"] == 64 and card["agent"]["max_new_tokens"] == 4096
    assert card["max_new_tokens"] == 4096
    assert card["eval_agent"] == {
        "defaults": "upstream",
        "overrides": {"valid_instruction_prob": 1.0, "max_turns": 64, "max_new_tokens": 4096},
        "training_values": {"valid_instruction_prob": 0.3, "max_turns": 2, "max_new_tokens": 32},
    }
    text = resources.files("asearcher.eval").joinpath("prompts", judge_prompt).read_text(encoding="utf-8")
    assert card["judge_details"]["prompt"] == judge_prompt
    assert card["judge_details"]["prompt_sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()

    # a resume under other eval-agent settings is refused (the effective agent is part of the protocol)
    assert main([*argv, "--set", "eval.agent.max_turns=5"]) == 2
