"""Avg@k / Pass@k over k sampled answers per question, and the k sample seeds.

Avg@k  = mean over every (question, sample) score among each question's first k samples.
Pass@k = mean over questions of the max score among its first k samples.
"First k" means the k lowest sample indices, never file or completion order: a resumed run that wrote sample 3
before sample 0 aggregates exactly like an uninterrupted one. (Upstream reads samples in glob order.)
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

#: upstream draws the extra seeds from randint(0, 1e7)
_SEED_RANGE = 10_000_000


def seeds_for(base_seed: int, k: int) -> list[int]:
    """k distinct deterministic sample seeds from one base seed.

    Rule: seed 0 is base_seed itself; the others are drawn in order from random.Random(base_seed).randint(0, 1e7),
    skipping any value already taken. So seeds_for(s, k) is a prefix of seeds_for(s, k + 1), and sample i always
    gets the same seed however many samples are requested.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = random.Random(base_seed)
    seeds = [int(base_seed)]
    while len(seeds) < k:
        s = rng.randint(0, _SEED_RANGE)
        if s not in seeds:
            seeds.append(s)
    return seeds


@dataclass(frozen=True)
class AtK:
    k: int
    avg: float  # Avg@k
    pass_: float  # Pass@k
    n_questions: int
    n_scores: int  # (question, sample) pairs used
    n_incomplete: int  # questions with fewer than k samples (they count with the samples they have)

    def as_dict(self, metric: str) -> dict[str, float | int]:
        return {f"{metric}.avg@{self.k}": self.avg, f"{metric}.pass@{self.k}": self.pass_}


def at_k(scores: Iterable[tuple[str, int, float]], k: int | None = None) -> AtK:
    """Avg@k and Pass@k from (question id, sample index, score) triples.

    k=None uses the largest number of samples any question has. A repeated (question, sample) pair is an error.
    """
    by_q: dict[str, dict[int, float]] = defaultdict(dict)
    for qid, idx, score in scores:
        if idx in by_q[qid]:
            raise ValueError(f"question {qid!r} has sample {idx} twice")
        by_q[qid][int(idx)] = float(score)
    if not by_q:
        raise ValueError("no scores to aggregate")
    if k is None:
        k = max(len(s) for s in by_q.values())
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    total, n, pass_sum, incomplete = 0.0, 0, 0.0, 0
    for samples in by_q.values():
        first = [samples[i] for i in sorted(samples)[:k]]
        incomplete += len(first) < k
        total += sum(first)
        n += len(first)
        pass_sum += max(first)
    return AtK(
        k=k,
        avg=total / n,
        pass_=pass_sum / len(by_q),
        n_questions=len(by_q),
        n_scores=n,
        n_incomplete=incomplete,
    )
