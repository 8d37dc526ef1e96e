"""The RL question stream: cyclic, seeded, epoch-wise shuffled, with a resumable cursor.

Draw number `n` (0, 1, 2, ...) maps to row `perm(epoch)[n % N]` with `epoch = n // N` and `perm(epoch)` a
permutation seeded by (seed, epoch). The whole state is therefore `cursor` (the next draw number) plus a
`requeue` list of draw numbers that were admitted but not trained when a checkpoint was written: a resumed
run replays those first, then continues from the cursor, so no question is lost or repeated.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from asearcher.utils.jsonl import DataError


@dataclass
class Question:
    """One training question as the rollout workers see it."""

    index: int  # global draw number: unique across epochs, the key for seeding and ordering
    row: int  # position in the training file
    qid: str
    question: str
    answers: list[str]
    aug_answers: list[str] = field(default_factory=list)
    invalid: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_train_rows(
    path: str | Path | Sequence[str | Path], max_questions: int | None = None
) -> list[dict[str, Any]]:
    """Training QA rows of one file or several (a release file, the synthesized file, ...), normalized by
    asearcher.data.trainset; bad rows name file:line. `max_questions` caps the total. An id that an earlier file
    already used gets a "#n" suffix, so mixing sources drops nothing and reward lookups stay unambiguous."""
    from asearcher.data.trainset import load_trainset

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for p in paths:
        left = None if max_questions is None else max_questions - len(rows)
        if left is not None and left <= 0:
            break
        recs = load_trainset(p, limit=left)
        if not recs:
            raise DataError(f"training file {p} has no questions")
        for r in recs:
            seen[r.id] = seen.get(r.id, 0) + 1
            qid = r.id if seen[r.id] == 1 else f"{r.id}#{seen[r.id]}"
            rows.append(
                {
                    "qid": qid,
                    "question": r.question,
                    "answers": r.answers,
                    "aug_answers": r.aug_answers,
                    "invalid": r.invalid,
                }
            )
    return rows


class QuestionStream:
    """Deterministic infinite stream over `rows`; `state()`/`load_state()` make it resumable."""

    def __init__(self, rows: list[dict[str, Any]], seed: int = 1, shuffle: bool = True):
        if not rows:
            raise ValueError("QuestionStream needs at least one row")
        self.rows = rows
        self.seed = seed
        self.shuffle = shuffle
        self.cursor = 0
        self.requeue: deque[int] = deque()
        self._perm_cache: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        p = self._perm_cache.get(epoch)
        if p is None:
            p = list(range(len(self.rows)))
            if self.shuffle:
                random.Random(f"{self.seed}:epoch{epoch}").shuffle(p)
            self._perm_cache = {epoch: p}  # one epoch at a time is enough: draws are sequential
        return p

    def question(self, index: int) -> Question:
        """The question of draw number `index` (pure function of index and seed)."""
        n = len(self.rows)
        row = self._perm(index // n)[index % n]
        r = self.rows[row]
        return Question(
            index=index,
            row=row,
            qid=r["qid"],
            question=r["question"],
            answers=list(r["answers"]),
            aug_answers=list(r.get("aug_answers", [])),
            invalid=bool(r.get("invalid", False)),
        )

    def next(self) -> Question:
        """Re-queued questions first (in admission order), then the next draw."""
        if self.requeue:
            return self.question(self.requeue.popleft())
        idx = self.cursor
        self.cursor += 1
        return self.question(idx)

    def push_front(self, indices: list[int]) -> None:
        """Put admitted-but-untrained questions back so they are drawn next (ascending draw order)."""
        for i in sorted(indices, reverse=True):
            self.requeue.appendleft(i)

    def state(self, in_flight: list[int] = ()) -> dict[str, Any]:
        """Checkpoint state; `in_flight` draw numbers are stored to be replayed first on resume."""
        return {
            "cursor": self.cursor,
            "requeue": sorted(set(self.requeue) | set(in_flight)),
            "seed": self.seed,
            "n_rows": len(self.rows),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if st.get("n_rows") not in (None, len(self.rows)) or st.get("seed") not in (None, self.seed):
            raise DataError(
                f"checkpoint was written for a question stream of {st.get('n_rows')} rows / seed {st.get('seed')}, "
                f"but this run has {len(self.rows)} rows / seed {self.seed}: use the same --train file, "
                "rl.max_questions and seed, or a fresh --output directory"
            )
        self.cursor = int(st["cursor"])
        self.requeue = deque(int(i) for i in st.get("requeue", []))
