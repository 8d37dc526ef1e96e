"""The retrieval server under abuse: a per-request cost budget, large requests in turns beside small ones, dropped
work of clients that left, a body limit enforced while streaming, head/body/idle timeouts, a bounded JVM heap,
quiet client disconnects, clear wording; and the request parser under arbitrary input (hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asearcher.config import RetrievalConfig, ServerConfig

REPO = Path(__file__).resolve().parents[2]
java = pytest.mark.java  # tests that start a real server: Pyserini/Lucene need Java >= 21

# ---------------------------------------------------------------------------------------------- helpers


def _stats(server) -> dict:
    return httpx.get(server.url + "/health", timeout=30).json()["stats"]


def _wait_for(pred, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s}s")


def _proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status memory line (VmRSS, VmHWM) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) << 10


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(
            f"the server kept the connection open for {limit_s}s; got {data[:200]!r}"
        ) from None
    except ConnectionResetError:
        pass
    return data, time.monotonic() - t0


@pytest.fixture(scope="module")
def heavy_queries(corpus_file: Path) -> list[str]:
    """100 queries of 100 corpus words: at topk 100 that costs exactly the default budget (1e6) and takes seconds."""
    words = []
    with corpus_file.open() as f:
        for _, line in zip(range(300), f, strict=False):
            words += [w for w in re.findall(r"[a-z]{4,7}", json.loads(line)["contents"].lower())]
    rnd = random.Random(0)
    return [" ".join(rnd.choice(words) for _ in range(100)) for _ in range(100)]


# ---------------------------------------------------------------------------------------------- 1. cost budget


@java
def test_request_over_the_cost_budget_gets_a_clear_4xx(retrieval_server, heavy_queries):
    # 21 queries x 500 terms x topk 100 = 1.05e6 > 1e6 (each query is under max_query_chars).
    long_queries = [" ".join([q] * 5) for q in heavy_queries[:21]]
    assert all(len(q) <= 4096 for q in long_queries)
    r = httpx.post(
        retrieval_server.url + "/retrieve", json={"queries": long_queries, "topk": 100}, timeout=120
    )
    assert r.status_code == 422, r.text[:300]
    err = r.json()
    assert set(err) == {"error", "detail"}
    assert "1050000" in err["error"] and "1000000" in err["error"]
    assert "retrieval.server.max_request_cost" in err["error"]
    # What the paper's agents send (1 query, ~30 terms, topk 10) is far below the budget.
    ok = httpx.post(
        retrieval_server.url + "/retrieve", json={"queries": [heavy_queries[0][:200]], "topk": 10}, timeout=30
    )
    assert ok.status_code == 200 and len(ok.json()["result"][0]) == 10


def test_budget_default_admits_agent_searches_and_batches():
    from asearcher.retrieval.server_limits import parse_retrieve, query_cost

    cfg = RetrievalConfig()
    agent = " ".join(["word"] * 30)
    assert query_cost(agent, 10) == 300
    # An eval/RL-style batch at the request limit: 1024 agent queries at topk 10.
    req = parse_retrieve(json.dumps({"queries": [agent] * 1024, "topk": 10}).encode(), cfg)
    assert req.cost == 307_200 <= cfg.server.max_request_cost


# ---------------------------------------------------------------------------------------------- 2. fair batching


async def _timed_posts(url: str, plan: list[tuple[str, dict, float]]) -> dict[str, tuple[float, float, dict]]:
    """Send each (name, body) after its delay, concurrently; per name: (answer head arrived, answer read, json).

    The head arrives when the server has finished the search: ordering by it leaves out the time a client takes to
    receive and parse a big answer.
    """
    out: dict[str, tuple[float, float, dict]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(name: str, body: dict, delay: float) -> None:
            await asyncio.sleep(delay)
            async with client.stream("POST", "/retrieve", json=body) as r:
                head = time.monotonic()
                await r.aread()
            assert r.status_code == 200, r.text[:300]
            out[name] = (head, time.monotonic(), r.json())

        await asyncio.gather(*(one(*p) for p in plan))
    return out


@java
def test_small_requests_are_not_stalled_by_a_large_one(retrieval_server, heavy_queries):
    # The large request takes seconds; one-query requests sent while it runs are answered before its search ends.
    plan = [("heavy", {"queries": heavy_queries, "topk": 100}, 0.0)]
    plan += [(f"light{i}", {"queries": ["Voyager 2 Uranus"], "topk": 5}, 0.5 + 0.1 * i) for i in range(3)]
    t = asyncio.run(_timed_posts(retrieval_server.url, plan))
    assert all(t[f"light{i}"][1] < t["heavy"][0] for i in range(3)), {k: v[:2] for k, v in t.items()}


@java
def test_large_requests_take_turns_and_come_back_whole(retrieval_server, bm25_searcher, heavy_queries):
    # 40 short queries (3 chunks of at most 16) sent while 100 heavy ones (7 chunks) run: its chunks interleave
    # with the heavy request's, so it finishes first, and its answers are in order, as if searched in one batch.
    medium = [f"history of {w}" for w in ("France", "Uranus", "Citibank", "music", "opera")] * 8
    plan = [
        ("heavy", {"queries": heavy_queries, "topk": 100}, 0.0),
        ("medium", {"queries": medium, "topk": 4}, 0.5),
    ]
    t = asyncio.run(_timed_posts(retrieval_server.url, plan))
    assert t["medium"][1] < t["heavy"][0], {k: v[:2] for k, v in t.items()}
    ref = bm25_searcher.batch_search(medium, 4)
    assert [[d["id"] for d in docs] for docs in t["medium"][2]["result"]] == [
        [d["id"] for d in r] for r in ref
    ]
    heavy = t["heavy"][2]["result"]
    assert len(heavy) == 100 and all(len(docs) == 100 for docs in heavy)


# ---------------------------------------------------------------------------------------------- 3. dropped work


@java
def test_work_of_a_client_that_left_is_dropped(retrieval_server, heavy_queries):
    before = _stats(retrieval_server)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.5 s and closes its connection
        httpx.post(
            retrieval_server.url + "/retrieve",
            json={"queries": heavy_queries, "topk": 100},
            timeout=httpx.Timeout(60, read=0.5),
        )
    after = _wait_for(
        lambda: (s := _stats(retrieval_server))["dropped"]["requests"] > before["dropped"]["requests"] and s
    )
    searched = after["queries"] - before["queries"]
    dropped = after["dropped"]["queries"] - before["dropped"]["queries"]
    assert searched < len(heavy_queries) and dropped > 0
    assert searched + dropped == len(heavy_queries)


# ---------------------------------------------------------------------------------------------- 4. chunked bodies


@java
def test_chunked_body_is_cut_off_at_the_limit(retrieval_server):
    sent = 0

    def body():
        nonlocal sent
        yield b'{"queries": ["'
        chunk = b"a" * (1 << 20)
        for _ in range(200):  # 200 MB, chunked (no Content-Length for the server to check first)
            sent += len(chunk)
            yield chunk
        yield b'"]}'

    pid = retrieval_server.process.pid
    peak_before = _proc_status(pid, "VmHWM")
    r = httpx.post(
        retrieval_server.url + "/retrieve",
        content=body(),
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert r.status_code == 413 and "byte limit" in r.json()["error"]
    assert sent < 64 << 20, f"the client sent {sent >> 20} MB before the server stopped reading"
    assert _proc_status(pid, "VmHWM") - peak_before < 64 << 20
    assert httpx.get(retrieval_server.url + "/health").status_code == 200


# ---------------------------------------------------------------------------------------------- 5. timeouts


@pytest.fixture(scope="module")
def strict_server(bm25_index: Path, tmp_path_factory):
    """A server with 1 s head/body/idle timeouts and a 4 KiB head limit."""
    from asearcher.retrieval.service import running_server

    overrides = [
        "retrieval.server.header_timeout_s=1",
        "retrieval.server.body_timeout_s=1",
        "retrieval.server.idle_timeout_s=1",
        "retrieval.server.max_header_bytes=4096",
    ]
    log = tmp_path_factory.mktemp("strict") / "server.log"
    with running_server(bm25_index, overrides=overrides, log_path=log) as server:
        yield server


def _connect(server) -> socket.socket:
    return socket.create_connection((server.ip, server.port), timeout=10)


@java
def test_half_sent_head_is_closed_after_the_header_timeout(strict_server):
    before = _stats(strict_server)["connections"]["header_timeouts"]
    with _connect(strict_server) as s:
        s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Ty")
        data, took = _read_until_closed(s, 8)
    assert data.startswith(b"HTTP/1.1 408") and b"retrieval.server.header_timeout_s" in data
    with _connect(strict_server) as s:  # a connection that never says anything
        data, took = _read_until_closed(s, 8)
    assert data == b""
    assert _stats(strict_server)["connections"]["header_timeouts"] == before + 2


@java
def test_trickled_head_does_not_extend_the_deadline(strict_server):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with _connect(strict_server) as s:
        t0 = time.monotonic()
        for byte in head:  # one byte every 0.1 s: the whole head would take 24 s
            if select.select([s], [], [], 0.1)[0]:
                break  # the server answered or closed
            try:
                s.send(bytes([byte]))
            except OSError:
                break
        took = time.monotonic() - t0
    assert took < 6, f"a trickling client kept its connection for {took:.1f}s"


@java
def test_idle_keep_alive_connection_is_closed(strict_server):
    with _connect(strict_server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = _read_until_closed(s, 8)  # the answer, then the close after the 1 s idle timeout
    assert data.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in data


@java
def test_half_sent_body_gets_408(strict_server):
    before = _stats(strict_server)["connections"]["body_timeouts"]
    with _connect(strict_server) as s:
        s.sendall(
            b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            + b'{"queries"'
        )
        data, took = _read_until_closed(s, 8)
    assert data.startswith(b"HTTP/1.1 408") and b"retrieval.server.body_timeout_s" in data
    assert _stats(strict_server)["connections"]["body_timeouts"] == before + 1


@java
def test_oversized_head_gets_431(strict_server):
    with _connect(strict_server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 10_000 + b"\r\n")
        data, took = _read_until_closed(s, 8)
    assert data.startswith(b"HTTP/1.1 431") and b"retrieval.server.max_header_bytes" in data
    assert _stats(strict_server)["connections"]["oversized_heads"] >= 1
    # Ordinary clients are unaffected: keep-alive requests within the timeouts, a body that arrives in time.
    with httpx.Client(base_url=strict_server.url, timeout=30) as client:
        for _ in range(3):
            r = client.post("/retrieve", json={"queries": ["Uranus"], "topk": 2})
            assert r.status_code == 200 and len(r.json()["result"][0]) == 2


class _StubSearcher:
    backend, num_docs = "stub", 1

    def batch_search_scored(self, queries, k):
        return [[({"id": "1", "contents": q, "url": "u"}, 1.0)] for q in queries]


@contextlib.contextmanager
def _in_process_server(cfg: RetrievalConfig, http: str):
    """The server's app and uvicorn settings over a stub searcher, in a thread (no JVM in this process)."""
    import uvicorn

    from asearcher.retrieval.server import create_app, uvicorn_config

    app = create_app(_StubSearcher(), None, cfg)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn_config(app, cfg.server, http))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, 30)
        port = sock.getsockname()[1]
        yield SimpleNamespace(ip="127.0.0.1", port=port, url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_connection_guards_with_either_http_parser(http):
    scfg = ServerConfig(header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5, max_header_bytes=2048)
    with _in_process_server(RetrievalConfig(server=scfg), http) as srv:
        with _connect(srv) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nAcc")
            assert _read_until_closed(s, 5)[0].startswith(b"HTTP/1.1 408")
        with _connect(srv) as s:
            assert _read_until_closed(s, 5)[0] == b""
        with _connect(srv) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n")
            assert _read_until_closed(s, 5)[0].startswith(b"HTTP/1.1 431")
        with _connect(srv) as s:
            s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert _read_until_closed(s, 5)[0].startswith(b"HTTP/1.1 408")
        with _connect(srv) as s:  # a whole request is answered, then the idle connection is closed
            body = b'{"queries": ["q"]}'
            s.sendall(
                b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            data = _read_until_closed(s, 5)[0]
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(
                b'{"result":[[{"id":"1","contents":"q","url":"u"}]]}'
            )
        assert _stats(srv)["connections"] == {
            "header_timeouts": 2,
            "oversized_heads": 1,
            "body_timeouts": 1,
            "disconnects_mid_body": 0,
        }


# ---------------------------------------------------------------------------------------------- 6. JVM heap


@java
def test_jvm_heap_limit_reaches_the_jvm():
    # In a child process: Pyserini's JVM must never start inside a test worker (it crashes beside Ray).
    code = (
        "from asearcher.retrieval.java import configure_java\n"
        "configure_java(max_heap='300m')\n"
        "from pyserini.pyclass import autoclass\n"
        "print(autoclass('java.lang.Runtime').getRuntime().maxMemory())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    max_memory = int(proc.stdout.split()[-1])
    assert 0.8 * (300 << 20) <= max_memory <= 300 << 20


@java
def test_server_jvm_heap_is_bounded_by_default(retrieval_server):
    heap = httpx.get(retrieval_server.url + "/health").json()["jvm_max_heap_bytes"]
    assert 0.8 * (1 << 30) <= heap <= 1 << 30  # retrieval.jvm_max_heap: 1g


# ---------------------------------------------------------------------------------------------- 7. disconnect mid-body


@java
def test_disconnect_mid_body_is_logged_quietly_and_counted(retrieval_server):
    log_path = retrieval_server.log_path
    offset = log_path.stat().st_size
    before = _stats(retrieval_server)["connections"]["disconnects_mid_body"]
    with _connect(retrieval_server) as s:
        s.sendall(
            b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
            + b"x" * 100
        )
        time.sleep(0.3)
    _wait_for(lambda: _stats(retrieval_server)["connections"]["disconnects_mid_body"] == before + 1)
    log = _wait_for(lambda: log_path.read_bytes()[offset:].decode(errors="replace"))
    assert "disconnected in the middle of its /retrieve request body" in log
    assert "Traceback" not in log and "ERROR" not in log


# ---------------------------------------------------------------------------------------------- 8. wording


@java
@pytest.mark.parametrize(
    "body, status, must, must_not",
    [
        (
            b'{"queries": ["q"], "topk": 1180591620717411303424}',
            422,
            ["out of range", "between 1 and 100"],
            "float",
        ),
        (
            b'{"queries": ["q"], "topk": 18446744073709551615}',
            422,
            ["out of range", "between 1 and 100"],
            "float",
        ),
        (b'{"queries": ["\xff\xfe caf\xe9"]}', 400, ["not valid UTF-8"], "JSON"),
    ],
)
def test_error_wording(retrieval_server, body, status, must, must_not):
    r = httpx.post(retrieval_server.url + "/retrieve", content=body, timeout=30)
    assert r.status_code == status
    message = r.json()["error"]
    assert all(m in message for m in must) and must_not not in message, message


# ---------------------------------------------------------------------------------------------- 9. parser properties


@functools.cache
def _small() -> RetrievalConfig:
    """Small limits, so that generated requests reach every one of them."""
    return RetrievalConfig(
        topk=3,
        server=ServerConfig(max_queries_per_request=8, max_query_chars=40, max_topk=10, max_request_cost=200),
    )


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_retrieve_like = st.fixed_dictionaries(
    {"queries": st.lists(st.text(max_size=50), max_size=10) | _json},
    optional={
        "topk": st.none()
        | st.integers(-3, 14)
        | st.integers(2**62, 2**80)
        | st.integers(-(2**80), -(2**62))
        | _json,
        "return_scores": st.booleans() | _json,
        "extra": _json,
    },
)


def _expected(value, cfg: RetrievalConfig):
    """The request a correct parser makes of `value` (a decoded JSON body), or None if it must be refused."""
    from asearcher.retrieval.searcher import MAX_QUERY_TERMS

    scfg = cfg.server
    if not isinstance(value, dict) or not isinstance(value.get("queries"), list):
        return None
    queries = value["queries"]
    if not 1 <= len(queries) <= scfg.max_queries_per_request:
        return None
    if not all(isinstance(q, str) and len(q) <= scfg.max_query_chars for q in queries):
        return None
    topk = value.get("topk")
    topk = cfg.topk if topk is None else topk
    if type(topk) is not int or not 1 <= topk <= scfg.max_topk:
        return None
    scores = value.get("return_scores")
    scores = False if scores is None else scores
    if not isinstance(scores, bool):
        return None
    cost = sum(max(1, min(len(q.split()), MAX_QUERY_TERMS)) * topk for q in queries)
    return None if cost > scfg.max_request_cost else (queries, topk, scores, cost)


def _check_retrieve(body: bytes, expected) -> None:
    from asearcher.retrieval.server_limits import BadRequest, parse_retrieve

    try:
        req = parse_retrieve(body, _small())
    except BadRequest as e:
        assert 400 <= e.status < 500 and e.message
        assert expected is None, f"refused a valid request ({e.message}): {body[:200]!r}"
        return
    assert (req.queries, req.topk, req.return_scores, req.cost) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_retrieve_like | _json)
def test_parse_retrieve_on_any_json(value):
    body = json.dumps(value).encode()  # NaN, Infinity and 2**70 included: json.dumps writes them

    def not_json(constant):  # NaN and Infinity are not JSON: a request holding one must be refused
        raise ValueError(constant)

    try:
        expected = _expected(json.loads(body, parse_constant=not_json), _small())
    except ValueError:
        expected = None
    _check_retrieve(body, expected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda b: b'{"queries": ["' + b, st.binary(max_size=100)))
def test_parse_any_bytes_gives_a_request_or_a_clear_4xx(body):
    from asearcher.retrieval.server_limits import BadRequest, parse_access, parse_retrieve

    for parse in (parse_retrieve, parse_access):
        try:
            parse(body, _small())
        except BadRequest as e:
            assert 400 <= e.status < 500 and e.message


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({"urls": st.lists(st.text(max_size=30), max_size=10) | _json}) | _json)
def test_parse_access_on_any_json(value):
    from asearcher.retrieval.server_limits import BadRequest, parse_access

    urls = value.get("urls") if isinstance(value, dict) else None
    valid = isinstance(urls, list) and len(urls) <= 8 and all(isinstance(u, str) for u in urls)
    try:
        assert parse_access(json.dumps(value).encode(), _small()) == urls and valid
    except BadRequest as e:
        assert 400 <= e.status < 500 and e.message and not valid


def test_parser_wording():
    from asearcher.retrieval.server_limits import BadRequest, parse_retrieve

    cases = [
        (
            b'{"queries": ["q"], "topk": 1180591620717411303424}',
            422,
            "out of range: it must be between 1 and 10",
        ),
        (b'{"queries": ["q"], "topk": -1180591620717411303424}', 422, "out of range"),
        (b'{"queries": ["q"], "topk": 11}', 422, "out of range: it must be between 1 and 10"),
        (b'{"queries": ["q"], "topk": 2.5}', 422, "must be an integer"),
        (b'{"queries": ["\xc3\x28"]}', 400, "not valid UTF-8"),
        (
            b'{"queries": ["a b c d e f g", "h i j k l m n", "o p q r s t u"], "topk": 10}',
            422,
            "request cost 210",
        ),
        (
            b'{"queries": ' + json.dumps(["q"] * 9).encode() + b"}",
            422,
            "retrieval.server.max_queries_per_request",
        ),
    ]
    for body, status, message in cases:
        with pytest.raises(BadRequest) as e:
            parse_retrieve(body, _small())
        assert e.value.status == status and message in e.value.message, e.value.message
    # At the budget exactly (20 terms x topk 10 = 200) is fine.
    assert (
        parse_retrieve(
            b'{"queries": ["a b c d e f g h i j", "k l m n o p q r s t"], "topk": 10}', _small()
        ).cost
        == 200
    )
