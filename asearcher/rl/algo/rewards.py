"""Training rewards (paper-notes §2.6, §4.5). Pure functions except the optional judge wrapper.

- F1 (training flavour, as upstream): lower-case, punctuation -> space, whitespace collapsed, whole-string
  "True"/"False" -> "yes"/"no", then F1 over token SETS. When the gold contains CJK characters both sides are
  tokenised as single characters plus digit runs (punctuation and spaces dropped). A list of golds: max.
  This differs from the SQuAD-style evaluation F1 (bag of tokens, articles removed) in asearcher.eval.metrics.
- EM: SQuAD normalisation (lower, punctuation and articles removed, whitespace collapsed) after the bool mapping.
- Format reward: binary, every generation of the trajectory must pass (balanced search/access/answer tags, at
  most one tool tag, no "assistant", at most one </think>).
- aug_answer blend: (1-w) * F1(ans) + w * max(F1(aug), F1(ans)), w = cfg.aug_answer_weight (0.3).
- Invalid-question rule: when the prompt carried the "valid" instruction (traj.meta["valid_instruction"]), an
  answer containing question|invalid|appropriate|valid scores cfg.invalid_penalty (-0.5), overriding the rest.

score_trajectory order: base = metric (with the aug blend), times the format reward (f1/em only); then the
invalid-question override. A missing answer scores 0.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from asearcher.agent.parsing import trajectory_format_ok
from asearcher.agent.trajectory import Trajectory
from asearcher.config import RLConfig
from asearcher.eval.metrics import set_f1

Golds = str | Sequence[str] | None

_PUNCT = set(string.punctuation)
_PUNCT_RE = re.compile("[" + re.escape(string.punctuation) + "]")
_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_DIGITS_RE = re.compile(r"\d+")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
INVALID_WORDS_RE = re.compile(r"question|invalid|appropriate|valid")


def _golds(answers: Golds) -> list[str]:
    if answers is None:
        return []
    if isinstance(answers, str):
        return [answers]
    return [str(a) for a in answers if a is not None]


def bool_mapping(s: str) -> str:
    t = s.strip()
    return {"True": "yes", "False": "no"}.get(t, s)


def normalize_train(s: str) -> str:
    """Lower-case, punctuation -> space, whitespace collapsed (after the bool mapping)."""
    s = bool_mapping(s).lower()
    s = _PUNCT_RE.sub(" ", s)
    return " ".join(s.split())


def has_cjk(s: str) -> bool:
    return bool(_CJK_RE.search(s))


def cjk_tokens(s: str) -> set[str]:
    """Single non-digit, non-punctuation, non-space characters plus maximal digit runs."""
    s = bool_mapping(s).lower()
    toks = set(_DIGITS_RE.findall(s))
    for ch in _DIGITS_RE.sub(" ", s):
        if not ch.isspace() and ch not in _PUNCT and not _is_unicode_punct(ch):
            toks.add(ch)
    return toks


def _is_unicode_punct(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch).startswith("P")


def f1_one(prediction: str, gold: str) -> float:
    if has_cjk(gold):
        return set_f1(cjk_tokens(prediction), cjk_tokens(gold))
    return set_f1(set(normalize_train(prediction).split()), set(normalize_train(gold).split()))


def f1_reward(prediction: str | None, answers: Golds) -> float:
    """Training F1: max over golds; 0 for a missing prediction or no golds."""
    if prediction is None:
        return 0.0
    return max((f1_one(prediction, g) for g in _golds(answers)), default=0.0)


def normalize_squad(s: str) -> str:
    s = bool_mapping(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def em_reward(prediction: str | None, answers: Golds) -> float:
    if prediction is None:
        return 0.0
    p = normalize_squad(prediction)
    return max((1.0 if p == normalize_squad(g) else 0.0 for g in _golds(answers)), default=0.0)


# ---- format ---------------------------------------------------------------------------------------------------


def format_reward(outputs: Iterable[str]) -> float:
    """1.0 when every generation passes the agents' format check (agent.parsing.format_facts), else 0.0."""
    return 1.0 if trajectory_format_ok(outputs) else 0.0


# ---- composition ------------------------------------------------------------------------------------------------


def blend_aug(metric, prediction: str | None, answers: Golds, aug_answers: Golds, weight: float) -> float:
    """(1-w) * m(ans) + w * max(m(aug), m(ans)); plain m(ans) when there are no aug answers."""
    base = metric(prediction, answers)
    aug = _golds(aug_answers)
    if not aug:
        return base
    return (1.0 - weight) * base + weight * max(metric(prediction, aug), base)


def is_invalid_answer(prediction: str | None) -> bool:
    return prediction is not None and bool(INVALID_WORDS_RE.search(prediction.lower()))


def judge_reward(judge: Any, question: str, answers: Golds, prediction: str | None, seed: int | None = None):
    """Score with an asearcher.eval.judge.Judge (async `judge(question, answers, prediction)`); returns
    (score, info). Runs the coroutine to completion when called outside an event loop."""
    if not _no_running_loop():
        raise RuntimeError("judge_reward called inside a running event loop; use ajudge_reward")
    return _judge_info(asyncio.run(judge.judge(question, _golds(answers), prediction, seed=seed)))


async def ajudge_reward(
    judge: Any, question: str, answers: Golds, prediction: str | None, seed: int | None = None
):
    return _judge_info(await judge.judge(question, _golds(answers), prediction, seed=seed))


def _judge_info(res: Any) -> tuple[float, dict[str, Any]]:
    to_dict = getattr(res, "to_dict", None)
    info = {"judge": to_dict() if callable(to_dict) else res}
    return float(getattr(res, "score", res)), info


def _no_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def _compose(
    traj: Trajectory, answers: Golds, aug_answers: Golds, cfg: RLConfig, judged: tuple[float, dict] | None
) -> tuple[float, dict[str, Any]]:
    pred = traj.prediction
    info: dict[str, Any] = {"has_answer": pred is not None}
    if cfg.reward == "judge":
        assert judged is not None
        score, jinfo = judged
        info.update(jinfo)
        info["judge_score"] = score
    else:
        metric = f1_reward if cfg.reward == "f1" else em_reward
        score = blend_aug(metric, pred, answers, aug_answers, cfg.aug_answer_weight)
        info[cfg.reward] = score
        info[f"{cfg.reward}_ans"] = metric(pred, answers)
        if cfg.format_reward:
            fmt = format_reward(c.output_text for c in traj.llm_calls)
            info["format"] = fmt
            score *= fmt
    valid_inst = bool(traj.meta.get("valid_instruction", False))
    info["valid_instruction"] = valid_inst
    invalid = valid_inst and is_invalid_answer(pred)
    info["invalid"] = invalid
    if invalid:
        score = cfg.invalid_penalty
    return float(score), info


def score_trajectory(
    traj: Trajectory, answers: Golds, aug_answers: Golds, cfg: RLConfig, judge: Any = None
) -> tuple[float, dict[str, Any]]:
    """(reward, info) for one trajectory; the answer is traj.prediction. Synchronous (judge via asyncio.run)."""
    judged = None
    if cfg.reward == "judge":
        if judge is None:
            raise ValueError(
                "rl.reward is 'judge' but no judge was given (build one with asearcher.eval.judge)"
            )
        judged = judge_reward(judge, traj.question, answers, traj.prediction, seed=traj.seed)
    return _compose(traj, answers, aug_answers, cfg, judged)


async def ascore_trajectory(
    traj: Trajectory, answers: Golds, aug_answers: Golds, cfg: RLConfig, judge: Any = None
) -> tuple[float, dict[str, Any]]:
    """Async variant for rollout workers (awaits the judge instead of starting a loop)."""
    judged = None
    if cfg.reward == "judge":
        if judge is None:
            raise ValueError(
                "rl.reward is 'judge' but no judge was given (build one with asearcher.eval.judge)"
            )
        judged = await ajudge_reward(judge, traj.question, answers, traj.prediction, seed=traj.seed)
    return _compose(traj, answers, aug_answers, cfg, judged)
