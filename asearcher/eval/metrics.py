"""String metrics of the paper's evaluation, each the max over the gold answers.

The paper's metrics give exactly what upstream's evaluation scripts give (`evaluation/evaluate.py`, scored by
`search_eval_async.py`; paper-notes §6.3):

- `f1`: the paper's eval F1. ASCII punctuation becomes spaces, lower-case, whitespace collapsed, then a SET of
  whitespace tokens on each side; F1 = 2PR/(P+R). No article removal, no True/False mapping. Empty -> 0.
- `em`: SQuAD normalisation (lower, ASCII punctuation deleted, articles a/an/the removed, whitespace collapsed);
  1 when equal. No True/False mapping, and two answers that both normalise to "" are equal (1).
- `cem` (cover EM): SQuAD normalisation after reading a bare `True`/`False` as `yes`/`no`; 1 when every gold
  token (`.split(" ")`, so "" is the one token of an empty gold) is among the prediction's tokens.

A missing prediction (None: no <answer> produced) is scored as upstream scores one, as the empty string.

The project's refinements, as separate metrics:

- `em_strict`, `cem_strict`: as `em` / `cem`, but a bare `True`/`False` is read as `yes`/`no` on both sides (EM
  too), a gold that normalises to nothing never matches (so an empty answer gets no free credit), and a missing
  prediction scores 0.
- `squad_f1`: the standard SQuAD v1.1 multiset token F1 (SQuAD normalisation, token counts matter; None -> 0).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable

_PUNCT = frozenset(string.punctuation)
_PUNCT_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})
_PUNCT_DELETE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WS = re.compile(r"\s+")

Golds = str | Iterable[str]
MetricFn = Callable[[str | None, Golds], float]


def _golds(answers: Golds) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    return [str(a) for a in answers]


# ---- normalisations ---------------------------------------------------------------------------------
def normalize_paper(text: str) -> str:
    """The paper's F1 normalisation: punctuation -> space, collapse whitespace, strip, lower-case."""
    return _WS.sub(" ", text.translate(_PUNCT_TO_SPACE)).strip().lower()


def bool_mapping(text: str) -> str:
    """A bare Python-style boolean is read as yes/no (only the exact strings 'True' and 'False')."""
    return {"True": "yes", "False": "no"}.get(text, text)


def normalize_squad(text: str) -> str:
    """SQuAD normalisation: lower, delete punctuation, remove articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT_DELETE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# ---- single-gold scores -----------------------------------------------------------------------------
def set_f1(pred: set[str], gold: set[str]) -> float:
    """F1 of two token sets (0 when either is empty); the paper's eval F1 and the training reward share it."""
    common = len(pred & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _f1_one(pred: str, gold: str) -> float:
    return set_f1(set(normalize_paper(pred).split()), set(normalize_paper(gold).split()))


def _em_one(pred: str, gold: str) -> float:
    """Upstream `em_check`: normalised strings equal (no True/False mapping; "" == "" is a match)."""
    return float(normalize_squad(pred) == normalize_squad(gold))


def _cem_one(pred: str, gold: str) -> float:
    """Upstream `cover_exact_match_score_1`: every gold token among the prediction's tokens, both after the
    True/False mapping; tokens are `.split(" ")`, so an empty string is the single token ''."""
    p = normalize_squad(bool_mapping(pred)).split(" ")
    g = normalize_squad(bool_mapping(gold)).split(" ")
    return float(all(t in p for t in g))


def _em_strict_one(pred: str, gold: str) -> float:
    g = normalize_squad(bool_mapping(gold))
    return float(bool(g) and normalize_squad(bool_mapping(pred)) == g)


def _cem_strict_one(pred: str, gold: str) -> float:
    g = normalize_squad(bool_mapping(gold)).split()
    if not g:
        return 0.0
    p = set(normalize_squad(bool_mapping(pred)).split())
    return float(all(t in p for t in g))


def _squad_f1_one(pred: str, gold: str) -> float:
    p = normalize_squad(pred).split()
    g = normalize_squad(gold).split()
    if not p or not g:
        return 0.0
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _max_over_golds(one: Callable[[str, str], float], name: str, *, none_as_empty: bool = False) -> MetricFn:
    def metric(prediction: str | None, answers: Golds) -> float:
        if prediction is None:
            if not none_as_empty:
                return 0.0
            prediction = ""  # upstream's driver scores a missing answer as ""
        return max((one(prediction, g) for g in _golds(answers)), default=0.0)

    metric.__name__ = name
    metric.__doc__ = f"Max over gold answers of {name} (see module docstring)."
    return metric


f1 = _max_over_golds(_f1_one, "f1")  # None -> 0, as upstream's "" scores 0
em = _max_over_golds(_em_one, "em", none_as_empty=True)
cem = _max_over_golds(_cem_one, "cem", none_as_empty=True)
em_strict = _max_over_golds(_em_strict_one, "em_strict")
cem_strict = _max_over_golds(_cem_strict_one, "cem_strict")
squad_f1 = _max_over_golds(_squad_f1_one, "squad_f1")

#: name -> metric(prediction, answers) -> float in [0, 1]
METRICS: dict[str, MetricFn] = {
    "f1": f1,
    "em": em,
    "cem": cem,
    "em_strict": em_strict,
    "cem_strict": cem_strict,
    "squad_f1": squad_f1,
}

#: the metrics that reproduce upstream's official scorers (F1, EM, CEM); the others are this project's own
OFFICIAL_METRICS = frozenset({"f1", "em", "cem"})

#: metrics that are not string functions but computed by the eval runner (LLM-as-judge, "LasJ")
MODEL_METRICS = frozenset({"judge"})


def get_metric(name: str) -> MetricFn:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def parse_metric_list(spec: str | Iterable[str], *, allow_model_metrics: bool = False) -> list[str]:
    """'f1,em' or ['f1','em'] -> validated list; raises ValueError naming the unknown metric."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    known = set(METRICS) | (MODEL_METRICS if allow_model_metrics else set())
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    if not names:
        raise ValueError("no metrics given")
    return names


def score_all(prediction: str | None, answers: Golds, names: Iterable[str]) -> dict[str, float]:
    return {n: get_metric(n)(prediction, answers) for n in names}
