"""JSONL reading and (atomic) writing. A bad line is an error naming file and line: nothing is silently dropped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.utils.atomic import atomic_write_text


class DataError(UserFacingError, ValueError):
    """Malformed input data; the message names the file and line."""


def parse_jsonl_line(raw: bytes, where: str, *, require: Iterable[str] = ()) -> dict:
    """One JSONL line -> dict. `where` ("file:line") starts every error message; a line without a trailing
    newline that does not parse is reported as truncated (the usual shape of an interrupted write)."""
    try:
        row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        what = "truncated line (no newline at end of file)" if not raw.endswith(b"\n") else "malformed JSON"
        raise DataError(f"{where}: {what}: {e}") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in require if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    return row


def iter_jsonl_numbered(
    path: str | Path, *, require: Iterable[str] = (), limit: int | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) per non-blank line; any other line that is not a JSON object is an error."""
    path = Path(path)
    required = tuple(require)
    n = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if limit is not None and n >= limit:
                return
            if not raw.strip():
                continue
            n += 1
            yield lineno, parse_jsonl_line(raw, f"{path}:{lineno}", require=required)


def iter_jsonl(path: str | Path, *, require: Iterable[str] = (), limit: int | None = None) -> Iterator[dict]:
    """Yield one dict per line (blank lines skipped); `require` names fields every row must have."""
    for _, row in iter_jsonl_numbered(path, require=require, limit=limit):
        yield row


def read_jsonl(path: str | Path, **kw: Any) -> list[dict]:
    return list(iter_jsonl(path, **kw))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


class JsonlAppender:
    """Append rows durably (flush + fsync per row) so a crash loses at most the row being written.

    On open, a torn last line from an earlier crash is cut off, so resumed runs never read garbage.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(cut)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
