"""Golden tests for the training rewards (hand-computed values)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from asearcher.config import RLConfig
from asearcher.rl.algo import rewards as R
from tests.rl.support import llm, traj


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("The Eiffel Tower", "eiffel tower", 0.8),  # P=2/3, R=1
        ("paris paris", "Paris", 1.0),  # SET overlap: duplicates do not lower precision
        ("Jean-Paul Sartre", "jean paul sartre", 1.0),  # punctuation -> space
        ("True", "yes", 1.0),  # bool mapping
        ("False", "no", 1.0),
        ("true", "yes", 0.0),  # the mapping is case-sensitive on the whole string, as upstream
        ("U.S.A.", "USA", 0.0),  # "u s a" vs "usa"
        ("北京", "北京市", 0.8),  # CJK gold: characters
        ("2008", "2008年", 2 / 3),  # CJK gold: digit runs stay whole
        ("an apple", "the apple", 0.5),  # no article removal in training F1
        ("", "x", 0.0),
    ],
)
def test_f1_golden(pred, gold, expected):
    assert R.f1_reward(pred, gold) == pytest.approx(expected)


def test_f1_list_gold_takes_max_and_missing_is_zero():
    assert R.f1_reward("barack obama", ["obama", "barack obama", "x"]) == 1.0
    assert R.f1_reward("barack obama", ["obama"]) == pytest.approx(2 / 3)
    assert R.f1_reward(None, ["a"]) == 0.0
    assert R.f1_reward("a", []) == 0.0


@pytest.mark.parametrize(
    "pred,gold,expected",
    [("The Beatles!", "beatles", 1.0), ("True", "yes", 1.0), ("beatle", "beatles", 0.0), (None, "x", 0.0)],
)
def test_em_golden(pred, gold, expected):
    assert R.em_reward(pred, gold) == expected


@pytest.mark.parametrize(
    "text,ok",
    [
        ("I should look it up.</think>\n<search> eiffel tower </search>", True),
        ("it is paris</think>\n<answer> Paris </answer>", True),
        ("summary of the page</think>", True),
        ("<search> a </search> then <search> b </search>", False),  # two tool tags
        ("<search> a </search> <access> u </access>", False),
        ("Assistant: <answer> x </answer>", False),
        ("the assistant said</think>", False),
        ("a</think>b</think>", False),
        ("<answer> cut by the length limit", False),  # unbalanced
    ],
)
def test_generation_format(text, ok):
    assert R.format_reward([text]) == (1.0 if ok else 0.0)


def test_format_reward_all_generations_must_pass():
    assert R.format_reward(["x</think>", "<answer> a </answer>"]) == 1.0
    assert R.format_reward(["x</think>", "<answer> a"]) == 0.0
    assert R.format_reward([]) == 1.0


def test_aug_blend_golden():
    # F1(ans) = 2/3 ("tower" vs "eiffel tower"); F1(aug) = 1
    v = R.blend_aug(R.f1_reward, "tower", ["eiffel tower"], ["tower"], 0.3)
    assert v == pytest.approx(0.7 * 2 / 3 + 0.3 * 1.0)
    # aug never lowers the score: max(F1(aug), F1(ans))
    assert R.blend_aug(R.f1_reward, "eiffel tower", ["eiffel tower"], ["zzz"], 0.3) == pytest.approx(1.0)
    assert R.blend_aug(R.f1_reward, "tower", ["eiffel tower"], [], 0.3) == pytest.approx(2 / 3)


def _t(outputs, prediction, valid=False):
    t = traj("q", [llm([2, 3], [4], text=o) for o in outputs], prediction=prediction)
    t.meta["valid_instruction"] = valid
    return t


def test_score_trajectory_f1_times_format():
    cfg = RLConfig()
    good = _t(
        ["hm</think>\n<search> x </search>", "ok</think>\n<answer> eiffel tower </answer>"], "Eiffel Tower"
    )
    r, info = R.score_trajectory(good, ["eiffel tower"], None, cfg)
    assert r == 1.0 and info["format"] == 1.0 and info["f1"] == 1.0
    bad = _t(["Assistant: <answer> eiffel tower </answer>"], "Eiffel Tower")
    r, info = R.score_trajectory(bad, ["eiffel tower"], None, cfg)
    assert r == 0.0 and info["format"] == 0.0 and info["f1"] == 1.0
    r, _ = R.score_trajectory(bad, ["eiffel tower"], None, RLConfig(format_reward=False))
    assert r == 1.0
    r, info = R.score_trajectory(_t(["nothing"], None), ["x"], None, cfg)
    assert r == 0.0 and info["has_answer"] is False


def test_score_trajectory_em_and_aug():
    t = _t(["<answer> tower </answer>"], "tower")
    r, _ = R.score_trajectory(t, ["eiffel tower"], ["tower"], RLConfig(reward="em"))
    assert r == pytest.approx(0.3)  # 0.7 * 0 + 0.3 * max(1, 0)
    r, _ = R.score_trajectory(t, ["eiffel tower"], ["tower"], RLConfig())
    assert r == pytest.approx(0.7 * 2 / 3 + 0.3)


def test_invalid_question_rule_only_under_valid_instruction():
    cfg = RLConfig()
    pred = "The question is invalid."
    t = _t(["<answer> The question is invalid. </answer>"], pred, valid=True)
    r, info = R.score_trajectory(t, ["the question is invalid"], None, cfg)
    assert r == -0.5 and info["invalid"] is True
    t = _t(["<answer> The question is invalid. </answer>"], pred, valid=False)
    r, info = R.score_trajectory(t, ["the question is invalid"], None, cfg)
    assert r == 1.0 and info["invalid"] is False
    # the word list is matched anywhere, case-insensitively ("Validation" contains "valid")
    assert R.is_invalid_answer("Validation Act") and not R.is_invalid_answer("Paris")
    r, _ = R.score_trajectory(t, ["x"], None, RLConfig(invalid_penalty=-1.0))
    assert r == 0.0  # not under the valid instruction: plain F1


@dataclass
class _Res:
    score: float
    judgement: str

    def to_dict(self):
        return {"score": self.score, "judgement": self.judgement}


class _FakeJudge:
    """Test double for asearcher.eval.judge.Judge: 'Correct' iff the prediction equals a gold."""

    def __init__(self):
        self.calls = []

    async def judge(self, question, answers, prediction, *, seed=None):
        self.calls.append((question, tuple(answers), prediction))
        ok = prediction in answers
        return _Res(1.0 if ok else 0.0, "Correct" if ok else "Incorrect")


def test_judge_reward_sync_and_async():
    cfg = RLConfig(reward="judge")
    j = _FakeJudge()
    # no format reward with the judge (LRM recipe): "Assistant" in the output does not zero the score
    t = _t(["Assistant: <answer> Paris </answer>"], "Paris")
    r, info = R.score_trajectory(t, ["Paris"], None, cfg, judge=j)
    assert r == 1.0 and info["judge"]["judgement"] == "Correct" and "format" not in info
    r, _ = asyncio.run(R.ascore_trajectory(_t(["x"], "Rome"), ["Paris"], None, cfg, judge=j))
    assert r == 0.0
    assert j.calls[0] == ("q?", ("Paris",), "Paris")
    with pytest.raises(ValueError, match="judge"):
        R.score_trajectory(t, ["Paris"], None, cfg)
