"""Benchmark loaders: every format becomes rows {"id": str, "question": ..., "answers": [...]}.

Formats (named in the benchmark YAML):
- `jsonl` / `json`: a JSON list or JSONL (detected from the first character), the release's test.json(l).
- `frames_csv`: the official FRAMES CSV (`question`, `true_answer`); id = 0-based row index.
- `gaia_json`: the Search-o1/WebThinker GAIA text-only subset (`Question`, `Final answer`/`answer`, `task_id`).
- `xbench_csv`: the official encrypted xbench CSV (`id,prompt,answer,reference_steps,canary`).

Ids: the first present id field of the spec, else the 0-based record index, as a string; duplicates are errors.
Answers are always a non-empty list of non-empty strings (numbers are turned into strings).

Sealed benchmarks (xBench): decrypted text exists only in memory, wrapped in `Sealed`. str(), repr(), format() and
logging show only a short sha256 tag, and json.dumps() refuses the value (TypeError), so plaintext cannot reach a
file by accident. The eval runner calls `reveal()` only to build the prompt and to score, and writes for such
benchmarks only id + scores + `public_view(row)` hashes, never the question, gold answer or the model's text.
Pickling a Sealed value (e.g. sending it to a Ray actor) carries the plaintext: keep sealed rows in process.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asearcher.eval.registry import BenchmarkSpec, get_benchmark
from asearcher.utils.jsonl import DataError, iter_jsonl_numbered


class Sealed:
    """Plaintext that must not be written anywhere; `.reveal()` is the only way to read it."""

    __slots__ = ("_text", "sha256")

    def __init__(self, text: str):
        self._text = text
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def reveal(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"<sealed sha256:{self.sha256[:12]}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __len__(self) -> int:
        return len(self._text)


def reveal(value: str | Sealed) -> str:
    """Plain text of a question/answer, sealed or not (for prompts and scoring only)."""
    return value.reveal() if isinstance(value, Sealed) else value


def is_sealed(row: dict) -> bool:
    return isinstance(row.get("question"), Sealed) or any(
        isinstance(a, Sealed) for a in row.get("answers", ())
    )


def public_view(row: dict) -> dict[str, Any]:
    """A JSON-safe view: plain values as they are, sealed values replaced by {"sha256": ...}."""

    def pub(v: Any) -> Any:
        return {"sha256": v.sha256} if isinstance(v, Sealed) else v

    return {"id": row["id"], "question": pub(row["question"]), "answers": [pub(a) for a in row["answers"]]}


# ---- field extraction -----------------------------------------------------------------------------------
def _first(rec: dict, fields: list[str]) -> tuple[str | None, Any]:
    for f in fields:
        if f in rec and rec[f] is not None:
            return f, rec[f]
    return None, None


def _to_row(rec: dict, index: int, spec: BenchmarkSpec, where: str) -> dict:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    _, rid = _first(rec, spec.id_fields)
    rid = str(index) if rid is None else str(rid).strip()
    if not rid:
        raise DataError(f"{where}: field {spec.id_fields[0]!r} is empty")
    qf, question = _first(rec, spec.question_fields)
    if qf is None:
        raise DataError(f"{where}: missing question field (one of {', '.join(spec.question_fields)})")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field {qf!r} must be a non-empty string, got {question!r}")
    af, ans = _first(rec, spec.answer_fields)
    if af is None:
        raise DataError(f"{where}: missing answer field (one of {', '.join(spec.answer_fields)})")
    answers = _answers(ans, f"{where}: field {af!r}")
    return {"id": rid, "question": question, "answers": answers}


def _answers(ans: Any, where: str) -> list[str]:
    items = ans if isinstance(ans, list) else [ans]
    out = []
    for i, a in enumerate(items):
        if isinstance(a, bool) or not isinstance(a, str | int | float):
            raise DataError(f"{where}[{i}]: answers must be strings, got {type(a).__name__}")
        a = str(a)
        if not a.strip():
            raise DataError(f"{where}[{i}]: empty answer")
        out.append(a)
    if not out:
        raise DataError(f"{where}: empty answer list")
    return out


# ---- readers: yield (record, location) ------------------------------------------------------------------
def _read_json_records(path: Path) -> Iterator[tuple[Any, str]]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if head.startswith(b"["):
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8: {e}") from None
        for i, rec in enumerate(data):
            yield rec, f"{path}: item {i}"
        return
    for lineno, rec in iter_jsonl_numbered(path):
        yield rec, f"{path}:{lineno}"


def _read_csv(path: Path, required: list[str]) -> Iterator[tuple[dict, str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: missing column(s) {', '.join(missing)} (header: {reader.fieldnames})")
        try:
            for rec in reader:
                yield rec, f"{path}:{reader.line_num}"
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: bad CSV: {e}") from None


def _xbench_decrypt(field: str, key: bytes) -> str:
    data = base64.b64decode(field, validate=True)
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data)).decode("utf-8")


def _iter_xbench(path: Path) -> Iterator[dict]:
    for rec, where in _read_csv(path, ["id", "prompt", "answer", "canary"]):
        if not rec["canary"]:
            raise DataError(f"{where}: field 'canary' is empty (it is the decryption key)")
        key = rec["canary"].encode("utf-8")
        out = {"id": rec["id"].strip()}
        for field in ("prompt", "answer"):
            try:
                out[field] = _xbench_decrypt(rec[field], key)
            except (ValueError, UnicodeDecodeError):
                # never echo the (possibly half-decrypted) value
                raise DataError(
                    f"{where}: field {field!r} does not decrypt (bad base64 or wrong canary)"
                ) from None
        yield out | {"__where__": where}


def iter_benchmark(
    benchmark: str | BenchmarkSpec, test_data_dir: str | Path, *, limit: int | None = None
) -> Iterator[dict]:
    """Yield normalized rows of a benchmark from an ASearcher-test-data directory (the first `limit` only)."""
    spec = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    path, fmt = spec.resolve_file(test_data_dir)
    return iter_file(spec, path, fmt, limit=limit)


def iter_questions_file(
    benchmark: str | BenchmarkSpec, path: str | Path, *, limit: int | None = None
) -> Iterator[dict]:
    """Yield normalized rows of a run benchmark (source: run, e.g. train-questions) from the run's file."""
    spec = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    path = Path(path)
    if not path.is_file():
        raise DataError(f"benchmark {spec.name}: questions file {path} does not exist")
    return iter_file(spec, path, spec.files[0].format, limit=limit)


def iter_file(spec: BenchmarkSpec, path: Path, fmt: str, *, limit: int | None = None) -> Iterator[dict]:
    """Rows of one benchmark file in format `fmt`, read with the spec's field names (the first `limit` only)."""
    if fmt in ("jsonl", "json", "gaia_json"):
        records: Iterator[tuple[Any, str]] = _read_json_records(path)
    elif fmt == "frames_csv":
        records = _read_csv(path, [spec.question_fields[0], spec.answer_fields[0]])
    elif fmt == "xbench_csv":
        records = ((r, r.pop("__where__")) for r in _iter_xbench(path))
    else:  # pragma: no cover - the registry validates formats
        raise ValueError(f"unknown format {fmt}")
    seen: dict[str, str] = {}
    if limit is not None and limit < 1:
        return
    for index, (rec, where) in enumerate(records):
        row = _to_row(rec, index, spec, where)
        if row["id"] in seen:
            raise DataError(f"{where}: duplicate id {row['id']!r} (first at {seen[row['id']]})")
        seen[row["id"]] = where
        if spec.sealed:
            row["question"] = Sealed(row["question"])
            row["answers"] = [Sealed(a) for a in row["answers"]]
        yield row
        if limit is not None and index + 1 >= limit:
            return  # before reading (and decrypting) the next record


def load_benchmark(
    benchmark: str | BenchmarkSpec, test_data_dir: str | Path, *, limit: int | None = None
) -> list[dict]:
    return list(iter_benchmark(benchmark, test_data_dir, limit=limit))


def load_questions_file(
    benchmark: str | BenchmarkSpec, path: str | Path, *, limit: int | None = None
) -> list[dict]:
    return list(iter_questions_file(benchmark, path, limit=limit))
