"""Record, then replay with the servers stopped: the same answers and errors, no network, no HTTP client; the
cache mode; an unrecorded request; keys never written. And an agent trajectory over web tools: a failing page
is a recorded tool error the agent goes on from, and a replayed trajectory equals the recorded one."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from asearcher.agent import make_agent
from asearcher.config import AgentConfig, ToolsConfig, WebConfig
from asearcher.errors import UserFacingError
from asearcher.llm.engine import SamplingParams
from asearcher.tools.base import ToolError
from asearcher.tools.web import WebTools
from tests.agent.doubles import ScriptedEngine, make_tokenizer
from tests.tools.web_servers import CANARY, Server, page_server, search_server, send


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", CANARY)
    monkeypatch.setenv("JINA_API_KEY", CANARY)


def cfg_for(api: str, allow: list[str], mode: str, record_dir=None) -> ToolsConfig:
    web = WebConfig(
        search_url=api,
        reader="direct",
        allow=allow,
        timeout_s=2.0,
        max_retries=1,
        backoff_s=0.01,
        record=mode,
        record_dir=None if record_dir is None else str(record_dir),
    )
    return ToolsConfig(backend="web", web=web)


async def session(tools: WebTools, base: str, other: str) -> list:
    """A fixed sequence of calls; every answer or error, as comparable values."""
    calls = [
        ("search", "who wrote hamlet", 3),
        ("access", f"{base}/html#section", None),
        ("access", f"{base}/pdf", None),
        ("access", f"{base}/leak", None),
        ("access", f"{base}/to-other", None),
        ("access", f"{base}/no-such-page", None),
        ("access", f"{other}/secret", None),
        ("search", "  who   wrote hamlet ", 3),  # the same normalized request
    ]

    async def one(tool, arg, k):
        try:
            if tool == "search":
                return [(h.url, h.contents) for h in await tools.search(arg, k)]
            return await tools.access(arg)
        except ToolError as e:
            return ("error", str(e))

    out = await asyncio.gather(*[one(*c) for c in calls])
    await tools.aclose()
    return out


def test_record_then_replay_with_the_network_off(tmp_path, monkeypatch):
    rec = tmp_path / "rec"
    with Server({"/secret": lambda h: send(h, 200, b"s", "text/plain")}) as other:
        with page_server(other.port) as pages, search_server(pages.base) as api:
            cfg = cfg_for(f"{api.base}/search", [pages.hostport], "record", rec)
            recorded = asyncio.run(session(WebTools(cfg), pages.base, other.base))
            assert api.counts["/search"] == 1  # the repeated search was answered from the recording
        assert other.requests == []
    assert (
        recorded[1].startswith("Hamlet") and recorded[2][0] == "error" and "application/pdf" in recorded[2][1]
    )
    assert "[redacted]" in recorded[3] and recorded[5] is None
    assert recorded[4][0] == recorded[6][0] == "error" and "refused URL" in recorded[4][1]
    assert recorded[7] == recorded[0]

    # every written file: plain JSON lines / JSON, no key anywhere
    files = sorted(p.name for p in rec.iterdir())
    assert files == ["access.jsonl", "meta.json", "search.jsonl"]
    for p in rec.iterdir():
        assert CANARY not in p.read_text()
    lines = [json.loads(x) for x in (rec / "access.jsonl").read_text().splitlines()]
    assert {x["request"]["url"] for x in lines} >= {f"{pages.base}/html", f"{pages.base}/pdf"}  # no #fragment
    assert json.loads((rec / "meta.json").read_text())["setting"] == "web:127.0.0.1+direct"

    # replay: servers gone, keys gone, and no HTTP client may even be created
    monkeypatch.delenv("SERPER_API_KEY")
    monkeypatch.delenv("JINA_API_KEY")

    def no_client(*a, **k):
        raise AssertionError("replay created an HTTP client")

    monkeypatch.setattr(httpx, "AsyncClient", no_client)
    replay = WebTools(cfg_for(f"{api.base}/search", [pages.hostport], "replay", rec))
    assert asyncio.run(session(replay, pages.base, other.base)) == recorded
    assert replay._search is None and replay._reader is None

    tools = WebTools(cfg_for(f"{api.base}/search", [], "replay", rec))
    with pytest.raises(
        ToolError, match=r"replay: no recorded search response for .*never asked.* in '.*rec'"
    ):
        asyncio.run(tools.search("never asked", 3))
    with pytest.raises(UserFacingError, match="does not exist"):
        WebTools(cfg_for(f"{api.base}/search", [], "replay", tmp_path / "nothing-here"))
    # the caller's folder is used when the config names none
    caller = WebTools(cfg_for(f"{api.base}/search", [], "replay"), record_dir=rec)
    assert caller.record_dir == rec


def test_cache_reuses_successes_and_retries_failures(tmp_path):
    rec = tmp_path / "cache"
    with page_server() as pages, search_server(pages.base) as api:
        cfg = cfg_for(f"{api.base}/search", [pages.hostport], "cache", rec)

        async def calls(tools):
            out = [await tools.search("q", 2), await tools.access(f"{pages.base}/html")]
            try:
                await tools.access(f"{pages.base}/error")
            except ToolError as e:
                out.append(str(e))
            await tools.aclose()
            return out

        first = asyncio.run(calls(WebTools(cfg)))
        n_search, n_error = api.counts["/search"], pages.counts["/error"]
        second = asyncio.run(calls(WebTools(cfg)))
        assert api.counts["/search"] == n_search  # cached
        assert pages.counts["/error"] > n_error  # a recorded failure is tried again
        assert second == first
    # the cache replays what it holds
    replay = WebTools(cfg_for("http://127.0.0.1:9/search", [], "replay", rec))
    assert asyncio.run(replay.access(f"{pages.base}/html")) == first[1]


def test_agent_records_a_tool_error_and_goes_on_and_replays_identically(tmp_path):
    def run(pages_base: str, api_base: str, allow, mode):
        tok = make_tokenizer()
        engine = ScriptedEngine(
            tok,
            [
                "<search> who wrote hamlet </search>",
                "Results noted.</think>",  # the read turn over the search results
                f"Read it.\n</think>\n<access> {pages_base}/broken </access>",
                "The page failed.</think>",  # the read turn over the failure
                f"Try another.\n</think>\n<access> {pages_base}/html </access>",
                "Shakespeare.</think>",
                "<answer> William Shakespeare </answer>",
            ],
        )
        tools = WebTools(cfg_for(f"{api_base}/search", allow, mode, tmp_path / "rec"))
        agent = make_agent(AgentConfig(max_turns=10), tok)

        async def go():
            try:
                return await agent.run(
                    qid="q1",
                    question="Who wrote Hamlet?",
                    answers=["William Shakespeare"],
                    engine=engine,
                    tools=tools,
                    sampling=SamplingParams(temperature=0.6, seed=7),
                )
            finally:
                await tools.aclose()

        return asyncio.run(go()), engine

    with page_server() as pages, search_server(pages.base) as api:
        traj, engine = run(pages.base, api.base, [pages.hostport], "record")
    assert traj.finish == "answer" and traj.prediction.strip() == "William Shakespeare"
    search, broken, page = traj.tool_calls
    assert search.ok and len(search.result) == 5
    assert not broken.ok and "closed or broken mid-response" in broken.error
    assert page.ok and page.result.startswith("Hamlet")

    replayed, engine2 = run(pages.base, api.base, [pages.hostport], "replay")

    def strip_times(d):
        if isinstance(d, dict):
            timing = ("t_start", "t_end", "generate_s", "tool_s")
            return {k: strip_times(v) for k, v in d.items() if k not in timing}
        if isinstance(d, list):
            return [strip_times(v) for v in d]
        return d

    assert strip_times(replayed.to_dict()) == strip_times(traj.to_dict())  # everything but wall-clock times
    assert traj.stats()["accesses_failed"] == 1
    assert engine2.prompts == engine.prompts
