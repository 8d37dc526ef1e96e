"""Training QA from ASearcher-train-data, one normalized record type for both files.

- ASearcher-Base-35k.jsonl: {qid, question, answer: [..], aug_answer: [..], source}
- ASearcher-LRM-35k.jsonl:  {id, idx, question, answer: str[, source]}

Id rule: the first present of `idx`, `qid`, `id`, `query_id` (upstream's load_metadata order idx > qid > id),
as a stripped string. Other id fields that disagree are kept in `raw_ids`. A file without any id field on a row
uses "<file stem>:<line>" so the id is still stable. A repeated id gets a "#2", "#3", ... suffix (logged once per
file), so no row is dropped and reward lookups stay unambiguous.
Answers are always a non-empty list of strings; `aug_answer` is kept as `aug_answers` (may be empty).
`invalid` marks the deliberately unanswerable synthetic questions (source `compose_chain_qa_invalid`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asearcher.utils.jsonl import DataError, iter_jsonl_numbered

log = logging.getLogger(__name__)

ID_FIELDS = ("idx", "qid", "id", "query_id")
INVALID_SOURCES = frozenset({"compose_chain_qa_invalid"})


@dataclass
class TrainRecord:
    id: str
    question: str
    answers: list[str]
    aug_answers: list[str] = field(default_factory=list)
    source: str | None = None
    invalid: bool = False
    raw_ids: dict[str, str] = field(default_factory=dict)  # every id field the row carried
    origin: str = ""  # "file:line", for error messages downstream

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _str_list(value: Any, where: str, field_name: str, *, allow_empty: bool) -> list[str]:
    items = [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value
    if not isinstance(items, list):
        raise DataError(f"{where}: field {field_name!r} must be a string or a list of strings, got {value!r}")
    out = []
    for i, a in enumerate(items):
        if isinstance(a, bool) or not isinstance(a, str | int | float):
            raise DataError(f"{where}: field {field_name!r}[{i}] must be a string, got {type(a).__name__}")
        a = str(a)
        if not a.strip():
            raise DataError(f"{where}: field {field_name!r}[{i}] is empty")
        out.append(a)
    if not out and not allow_empty:
        raise DataError(f"{where}: field {field_name!r} is an empty list")
    return out


def parse_record(row: Any, where: str, fallback_id: str) -> TrainRecord:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    q = row.get("question")
    if not isinstance(q, str) or not q.strip():
        raise DataError(f"{where}: field 'question' must be a non-empty string, got {q!r}")
    if "answer" not in row or row["answer"] is None:
        raise DataError(f"{where}: missing field 'answer'")
    answers = _str_list(row["answer"], where, "answer", allow_empty=False)
    aug = row.get("aug_answer")
    aug_answers = [] if aug is None else _str_list(aug, where, "aug_answer", allow_empty=True)
    raw_ids = {}
    for f in ID_FIELDS:
        v = row.get(f)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise DataError(f"{where}: field {f!r} must be a string or integer, got {v!r}")
        if str(v).strip():
            raw_ids[f] = str(v).strip()
    rid = next(iter(raw_ids.values()), fallback_id)
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        raise DataError(f"{where}: field 'source' must be a string, got {source!r}")
    return TrainRecord(
        id=rid,
        question=q,
        answers=answers,
        aug_answers=aug_answers,
        source=source,
        invalid=source in INVALID_SOURCES,
        raw_ids=raw_ids,
        origin=where,
    )


def iter_trainset(path: str | Path, *, limit: int | None = None) -> Iterator[TrainRecord]:
    """Yield normalized records of a training JSONL (the first `limit` only); bad rows name file:line:field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"training file {path} does not exist; run `asearcher fetch-data --release train-data`"
        )
    seen: dict[str, int] = {}
    dups = 0
    for lineno, row in iter_jsonl_numbered(path, limit=limit):
        where = f"{path}:{lineno}"
        rec = parse_record(row, where, fallback_id=f"{path.stem}:{lineno}")
        count = seen.get(rec.id, 0) + 1
        seen[rec.id] = count
        if count > 1:
            dups += 1
            rec.id = f"{rec.id}#{count}"
        yield rec
    if dups:
        log.warning("%s: %d rows repeat an earlier id; they were kept with a '#N' suffix", path, dups)


def load_trainset(path: str | Path, *, limit: int | None = None) -> list[TrainRecord]:
    return list(iter_trainset(path, limit=limit))
