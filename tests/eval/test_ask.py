"""`asearcher ask`: one question with any agent, engine and tools, the trajectory printed as it goes. The tiny model
against a real retrieval server (every agent kind), and a browsing engine double driving the real agent through the
web tools on the local web (a search, a page read, the answer)."""

from __future__ import annotations

import io
import json

import pytest

from asearcher.agent.trajectory import LLMCall, ToolCall
from asearcher.cli import main
from tests.fixtures.retrieval import LOCAL_WEB_OVERRIDES as WEB
from asearcher.eval.ask import TrajectoryPrinter, clip, resolve_ask_engine

# evaluation's agent settings scaled to the tiny model
TINY = ["--set", "eval.agent.max_turns=2", "--set", "eval.agent.max_new_tokens=12"]


# ---- pure parts ---------------------------------------------------------------------------------------------------
def test_engine_resolution(tmp_path):
    from asearcher.config import load_config
    from asearcher.errors import UserFacingError

    cfg = load_config(
        None, ["models.big.kind=openai", "models.big.model=m", "models.big.base_url=http://h/v1"]
    )
    assert resolve_ask_engine(cfg, None) == (cfg.engine.model, cfg.engine)
    assert resolve_ask_engine(cfg, "big")[1].kind == "openai"
    label, ec = resolve_ask_engine(cfg, str(tmp_path))
    assert label == str(tmp_path) and ec.model == str(tmp_path) and ec.kind == "transformers"
    with pytest.raises(UserFacingError, match="neither a key of the config's `models` \\(big\\)"):
        resolve_ask_engine(cfg, "nope")


def test_printer_shows_calls_results_pages_and_failures():
    out = io.StringIO()
    p = TrajectoryPrinter(out, max_chars=20)
    p(None, LLMCall([1], [5, 6], [0.0, 0.0], [0, 0], "stop", "act", "<search>q</search>", 1.0, 1.5))
    p(None, ToolCall("search", "q", True, [{"url": "http://a/wiki/A", "contents": '"A"\n' + "x" * 50}]))
    p(None, ToolCall("access", "http://a/wiki/A", True, "Page text " * 10))
    p(None, ToolCall("access", "http://b/", False, error="refused: loopback"))
    p(None, ToolCall("access", "http://c/", True, None))
    text = out.getvalue()
    assert "[1] act: 2 tokens, stop, 0.5s\n    <search>q</search>" in text
    assert "  search 'q': 1 result\n    1. http://a/wiki/A" in text and "more chars]" in text
    assert "  access http://a/wiki/A: 100 chars" in text
    assert "  access http://b/ failed: refused: loopback" in text and "access http://c/: no such page" in text
    assert clip("abc", 0) == "abc" and clip("abcdef", 3) == "abc ... [3 more chars]"


# ---- real engine, real server ------------------------------------------------------------------------------------


@pytest.fixture
def server_env(retrieval_server, monkeypatch):
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", retrieval_server.url)
    return retrieval_server


@pytest.mark.java
@pytest.mark.parametrize("kind", ["asearcher", "asearcher-reasoning", "search-r1"])
def test_ask_tiny_model_every_agent(kind, server_env, tiny_model_dir, tmp_path, capsys):
    traj_file = tmp_path / "traj.json"
    argv = ["ask", "Who founded the City Bank of New York?", "--agent", kind, "--model", str(tiny_model_dir),
            *TINY, "--trajectory", str(traj_file), "--answer", "Samuel Osgood", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("question: Who founded the City Bank of New York?\n")
    assert f"agent: {kind}   model: {tiny_model_dir} (transformers)   tools: local" in out
    assert "[1] " in out and "\nanswer: " in out and "\nscores: f1 " in out
    traj = json.loads(traj_file.read_text())
    assert traj["agent"] == kind and traj["question"] == "Who founded the City Bank of New York?"
    assert out.count("\n[") == traj["stats"]["turns"] >= 1  # one printed block per LLM call
    assert traj["stats"]["turns"] <= 2


@pytest.mark.java
def test_ask_browses_the_local_web(server_env, tiny_model_dir, monkeypatch, capsys):
    from transformers import AutoTokenizer

    from tests.eval.web_doubles import BrowsingEngine

    engine = BrowsingEngine(AutoTokenizer.from_pretrained(str(tiny_model_dir)), answer="Samuel Osgood")
    monkeypatch.setattr("asearcher.llm.factory.make_engine", lambda ec, **kw: engine)
    argv = ["ask", "Who was the first president of the City Bank of New York?", "--model", str(tiny_model_dir),
            "--set", "agent.allow_access=true", "--set", "eval.agent.max_turns=8", "--set",
            "eval.agent.max_new_tokens=64", "--set", "agent.max_context_tokens=100000", *WEB,
            "--answer", "Samuel Osgood", "--max-chars", "0"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tools: web:local+direct" in out
    assert "  search 'City Bank of New York founded 1812': 5 results" in out  # agent.topk of the defaults
    assert f"    1. {server_env.url}/wiki/" in out
    access = next(line for line in out.splitlines() if line.startswith("  access "))
    assert access.startswith(f"  access {server_env.url}/wiki/") and access.endswith(" chars"), access
    assert "    | " in out  # the page's text, as the direct reader extracted it from the local web's HTML
    assert "answer: 'Samuel Osgood' (finish: answer" in out and "scores: f1 1.000  em 1.000" in out


def test_ask_errors(capsys, tmp_path):
    assert main(["ask", "q?", "--model", "no-such-model"]) == 2
    assert "neither a key of the config's `models`" in capsys.readouterr().err
    assert main(["ask", "  ", "--model", str(tmp_path)]) == 2
    assert "the question is empty" in capsys.readouterr().err
    assert main(["ask", "q?", "--agent", "nope"]) == 2
    assert "agent.kind" in capsys.readouterr().err
