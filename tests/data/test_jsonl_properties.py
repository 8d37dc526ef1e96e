"""The JSONL readers and writers on arbitrary input: every line gives its row or a DataError naming file:line,
never another exception; whatever was read can be written and reads back equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asearcher.utils.jsonl import DataError, JsonlAppender, iter_jsonl_numbered, read_jsonl, write_jsonl

SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# strings with every code point, lone surrogates included (JSON input can carry them as "\ud800" escapes)
any_char = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.sampled_from(["é", "\u2028", "\ufeff", "\U0001f600", "\ud800", "\udfff", "\udc00"]),
    st.characters(),
)
json_text = st.text(any_char, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=8,
)
# as read from JSON: a surrogate pair in the generated text reads back as the one character it encodes
rows = st.dictionaries(json_text, json_values, max_size=4).map(lambda r: json.loads(json.dumps(r)))

NASTY = [
    b"[" * 100_000,  # nested deeper than the JSON decoder recurses
    b'{"n": ' + b"7" * 5000 + b"}",  # more digits than Python converts to an int
    b'{"a": "caf\xe9"}',  # Latin-1, not UTF-8
    b"\xff\xfe{\x00}\x00",  # UTF-16 with its byte-order mark
    b'{\x00"\x00a\x00"\x00:\x001\x00}\x00',  # UTF-16 without one (json.loads(bytes) would guess UTF-16)
    b'\xef\xbb\xbf{"bom": 1}',  # a UTF-8 byte-order mark: tolerated
    b'{"s": "\\ud800"}',  # a lone surrogate escape: a valid row
    b'{"x": NaN, "y": -Infinity}',
    b"NaN",
    b"[]",
    b'"text"',
    b"\x0b\x0c",  # whitespace only: blank
    b"\r",
    b"{",
]
line_bytes = st.one_of(
    rows.map(lambda r: json.dumps(r).encode()),
    rows.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(NASTY),
)


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """One directory for all examples of a test; fsync (durability, not what is tested here) is skipped."""
    import asearcher.utils.atomic
    import asearcher.utils.jsonl

    for mod in (asearcher.utils.atomic, asearcher.utils.jsonl):
        monkeypatch.setattr(mod.os, "fsync", lambda fd: None)
    return tmp_path


def _expected(raw: bytes):
    """What a line must give: a dict, None for a blank line, or the exception that makes it bad."""
    if not raw.strip():
        return None
    try:
        row = json.loads(raw.decode("utf-8-sig"))
    except Exception as e:  # noqa: BLE001 - any failure means "bad line"
        return e
    return row if isinstance(row, dict) else TypeError(type(row).__name__)


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@SETTINGS
@given(st.lists(line_bytes, max_size=8), st.booleans())
@example([NASTY[0]], True)
@example([b'{"ok": 1}', NASTY[1]], True)
@example([NASTY[2]], True)
@example([NASTY[4]], True)
def test_reader_gives_rows_or_an_error_naming_the_line(scratch, lines, final_newline):
    path = scratch / "data.jsonl"
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    path.write_bytes(data)
    got: list[dict] = []
    error = None
    try:
        for lineno, row in iter_jsonl_numbered(path):
            got.append((lineno, row))
    except DataError as e:
        error = e
    parts = data.split(b"\n")  # lines end at \n only (not at \r or the other separators of str.splitlines)
    raw_lines = [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    want = []
    for lineno, raw in enumerate(raw_lines, start=1):
        exp = _expected(raw)
        if exp is None:
            continue
        if isinstance(exp, Exception):
            assert error is not None, f"line {lineno} {raw[:60]!r} should be an error ({exp!r})"
            assert str(error).startswith(f"{path}:{lineno}: "), str(error)[:300]
            assert len(str(error)) < 1000  # the message names the problem, not the whole line
            break
        want.append((lineno, exp))
    else:
        assert error is None, f"unexpected error: {error}"
    assert [n for n, _ in got] == [n for n, _ in want]
    assert all(_same(a, b) for (_, a), (_, b) in zip(got, want, strict=True))


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"n": ' + b"7" * 5000 + b"}", "a value cannot be read"),
        (b'{"a": "caf\xe9"}\n', "not valid UTF-8 (byte 0xe9 at column 11)"),
        (b'\xef\xbb\xbf{"a": "caf\xe9"}\n', "not valid UTF-8 (byte 0xe9 at column 14)"),  # after a BOM
        # UTF-16 as the last line (json.loads(bytes) guessed the encoding and read it as {"a": 1})
        (b'{\x00"\x00a\x00"\x00:\x001\x00}\x00', "truncated line"),
    ],
)
def test_bad_lines_regressions(tmp_path, raw, message):
    """Found by the property test: a deep nesting and a huge integer crashed the reader (RecursionError,
    ValueError); an invalid UTF-8 line said "malformed JSON: 'utf-8' codec ..."; a UTF-16 line was read."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"ok": 1}\n\n' + raw)
    with pytest.raises(DataError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value), str(e.value)[:300]


@SETTINGS
@given(st.lists(rows, max_size=6))
@example([{"id": "q\ud800", "é": ["\udfff"]}])
def test_written_rows_read_back_equal(scratch, rs):
    d = scratch
    (d / "a.jsonl").unlink(missing_ok=True)
    write_jsonl(d / "w.jsonl", rs)
    with JsonlAppender(d / "a.jsonl") as app:
        for r in rs:
            app.append(r)
    for name in ("w.jsonl", "a.jsonl"):
        back = read_jsonl(d / name)
        assert back == rs
    assert (d / "w.jsonl").read_bytes() == (d / "a.jsonl").read_bytes()


@SETTINGS
@given(st.binary(max_size=60), rows)
def test_appender_cuts_a_torn_last_line_only(scratch, old: bytes, row):
    path = scratch / "s.jsonl"
    path.write_bytes(old)
    with JsonlAppender(path) as app:
        app.append(row)
    kept = old[: old.rfind(b"\n") + 1]
    data = path.read_bytes()
    assert data.startswith(kept) and json.loads(data[len(kept) :]) == row


def test_surrogate_rows_stay_utf8_elsewhere(tmp_path: Path):
    """Only a row UTF-8 cannot encode is written with escapes; the others keep their characters."""
    write_jsonl(tmp_path / "x.jsonl", [{"a": "café"}, {"a": "\ud800"}])
    assert (tmp_path / "x.jsonl").read_bytes() == b'{"a": "caf\xc3\xa9"}\n{"a": "\\ud800"}\n'
