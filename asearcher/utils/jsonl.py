"""JSONL reading and (atomic) writing. A bad line is an error naming file and line: nothing is silently dropped.

Lines are UTF-8. Strings that UTF-8 cannot encode (lone surrogates, which JSON input may carry as "\\ud800"
escapes) are written as JSON escapes, so every row that was read can be written and reads back equal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.utils.atomic import atomic_write_bytes


class DataError(UserFacingError, ValueError):
    """Malformed input data; the message names the file and line."""


def parse_jsonl_line(raw: bytes, where: str, *, require: Iterable[str] = ()) -> dict:
    """One JSONL line -> dict. `where` ("file:line") starts every error message; a line without a trailing
    newline that does not parse is reported as truncated (the usual shape of an interrupted write)."""
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (only at the start of a line) is tolerated
    except UnicodeDecodeError as e:
        col = e.start + len(raw) - len(e.object) + 1  # e.object lacks a leading byte-order mark
        raise DataError(
            f"{where}: not valid UTF-8 (byte 0x{e.object[e.start]:02x} at column {col})"
        ) from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        what = "truncated line (no newline at end of file)" if not raw.endswith(b"\n") else "malformed JSON"
        raise DataError(f"{where}: {what}: {e}") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise DataError(f"{where}: a value cannot be read: {e}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None
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


def encode_json(obj: Any, **dumps_kw: Any) -> bytes:
    """`obj` as UTF-8 JSON; when it holds a string UTF-8 cannot encode, as ASCII JSON (\\u escapes) instead."""
    try:
        return json.dumps(obj, ensure_ascii=False, **dumps_kw).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, **dumps_kw).encode("ascii")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_bytes(path, b"".join(encode_json(r) + b"\n" for r in rows))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, encode_json(obj, indent=2) + b"\n")


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
        self._f = open(self.path, "ab")

    def append(self, row: dict) -> None:
        self._f.write(encode_json(row) + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
