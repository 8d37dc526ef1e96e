"""`asearcher tool search|access`: one tool call with the run's tools, JSON out, exit 2 on a tool failure; with the
local tools and with the web tools on the local web (a real retrieval server subprocess on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest

from asearcher.cli import main
from tests.fixtures.retrieval import LOCAL_WEB_OVERRIDES as WEB

pytestmark = pytest.mark.java  # the retrieval server runs Pyserini/Lucene


@pytest.fixture
def server_env(retrieval_server, monkeypatch):
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", retrieval_server.url)
    return retrieval_server


def _json_out(capsys):
    return json.loads(capsys.readouterr().out)


def test_local_search_and_access(server_env, capsys):
    assert main(["tool", "search", "Who founded the City Bank of New York?", "--topk", "2"]) == 0
    hits = _json_out(capsys)
    assert len(hits) == 2 and all(set(h) == {"url", "contents", "score"} for h in hits)
    assert all(isinstance(h["score"], float) and h["contents"].startswith('"') for h in hits)
    assert main(["tool", "access", hits[0]["url"], "--compact"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # --compact: one line
    page = json.loads(out)
    assert page["url"] == hits[0]["url"] and page["chars"] == len(page["text"]) > 100
    assert main(["tool", "access", "https://en.wikipedia.org/wiki/No_such_page_xyz_123"]) == 0
    assert _json_out(capsys) is None
    # the default topk is the config's agent.topk
    assert main(["tool", "search", "Voyager 2", "--set", "agent.topk=4"]) == 0
    assert len(_json_out(capsys)) == 4


def test_tool_failures_exit_2_with_a_clear_message(server_env, capsys, monkeypatch):
    assert main(["tool", "search", "Citibank", "--topk", "100000"]) == 2  # the server refuses: no retry
    err = capsys.readouterr().err
    assert "asearcher tool: error: search failed (local tools)" in err and "topk" in err
    assert main(["tool", "search", "   "]) == 2
    assert "empty" in capsys.readouterr().err
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL")
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)
    assert main(["tool", "search", "Citibank"]) == 2
    assert "ASEARCHER_RETRIEVAL_URL" in capsys.readouterr().err


def test_web_tools_on_the_local_web(server_env, capsys, tmp_path, monkeypatch):
    assert main(["tool", "search", "Who founded the City Bank of New York?", "--topk", "3", *WEB]) == 0
    hits = _json_out(capsys)
    assert len(hits) == 3 and all(h["url"].startswith(server_env.url + "/wiki/") for h in hits)
    assert main(["tool", "access", hits[0]["url"], *WEB]) == 0
    page = _json_out(capsys)
    assert page["chars"] > 100 and page["chars"] == len(page["text"])
    # the guard lets the local web's own host:port through, and nothing else on the loopback
    for url in ("http://127.0.0.1:1/", "http://localhost:22/", "file:///etc/passwd"):
        assert main(["tool", "access", url, *WEB]) == 2, url
        assert "asearcher tool: error: access failed" in capsys.readouterr().err
    # recording: the response lands in the recording folder
    rec = tmp_path / "rec"
    args = ["tool", "search", "Voyager 2 Uranus", "--topk", "2", *WEB, "--record-dir", str(rec)]
    assert main([*args, "--set", "tools.web.record=record"]) == 0
    recorded = _json_out(capsys)
    assert rec.is_dir() and any(rec.iterdir())
    # ... and a replay answers the same with no server address at all
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL")
    assert main([*args, "--set", "tools.web.record=replay"]) == 0
    assert _json_out(capsys) == recorded
    assert main(["tool", "search", "never recorded", *WEB, "--record-dir", str(rec),
                 "--set", "tools.web.record=replay"]) == 2  # fmt: skip
    assert "replay" in capsys.readouterr().err
