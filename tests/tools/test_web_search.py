"""Search through a Serper-format server on 127.0.0.1: results, key, retries, timeouts, clear redacted errors;
start-up errors for missing keys; the local web endpoint; make_tools and the protocol card."""

from __future__ import annotations

import asyncio
import time

import pytest

from asearcher.config import ToolsConfig, WebConfig, load_config
from asearcher.config.checks import check_config
from asearcher.errors import UserFacingError
from asearcher.tools.base import ToolError
from asearcher.tools.factory import make_tools, require_tools_backend, setting_label
from asearcher.tools.web import WebTools
from tests.tools.web_servers import CANARY, search_server


@pytest.fixture(scope="module")
def api():
    with search_server("http://pages.test") as s:
        yield s


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", CANARY)
    monkeypatch.setenv("JINA_API_KEY", CANARY)


def web_cfg(**web) -> ToolsConfig:
    settings = dict(reader="direct", timeout_s=1.0, max_retries=2, backoff_s=0.01)
    settings.update(web)
    return ToolsConfig(backend="web", web=WebConfig(**settings))


def search(cfg: ToolsConfig, query: str, topk: int, **kw):
    async def go():
        tools = WebTools(cfg, **kw)
        try:
            return await tools.search(query, topk)
        finally:
            await tools.aclose()

    return asyncio.run(go())


def failure(cfg, query="q") -> str:
    with pytest.raises(ToolError) as e:
        search(cfg, query, 3)
    assert CANARY not in str(e.value)
    return str(e.value)


def test_results_are_topk_hits_with_title_and_snippet(api):
    hits = search(web_cfg(search_url=f"{api.base}/search"), "who wrote hamlet", 3)
    assert [h.url for h in hits] == [f"http://pages.test/page{i}" for i in range(3)]
    assert hits[0].contents == '"who wrote hamlet result 0"\nsnippet 0 of who wrote hamlet'
    method, path, headers = api.requests[-1]
    assert (method, path, headers["X-API-KEY"]) == ("POST", "/search", CANARY)


def test_rate_limits_are_retried_with_backoff(api):
    hits = search(web_cfg(search_url=f"{api.base}/flaky"), "q", 2)  # 429, 429, then results
    assert len(hits) == 2 and api.counts["/flaky"] == 3


def test_failures_are_clear_and_never_quote_the_key(api):
    n = api.counts.get("/broken", 0)
    msg = failure(web_cfg(search_url=f"{api.base}/broken"))
    assert "HTTP 500" in msg and "after 3 attempts" in msg and api.counts["/broken"] - n == 3
    msg = failure(web_cfg(search_url=f"{api.base}/echo"))
    assert "HTTP 400" in msg and "[redacted]" in msg and api.counts["/echo"] == 1  # a 4xx is not retried
    assert "not JSON" in failure(web_cfg(search_url=f"{api.base}/notjson"))
    t0 = time.monotonic()
    assert "timed out" in failure(web_cfg(search_url=f"{api.base}/slow", max_retries=0))
    assert time.monotonic() - t0 < 3
    assert "connection failed" in failure(web_cfg(search_url="http://127.0.0.1:9/search", max_retries=0))


def test_wrong_key_is_a_clear_error(api, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "another-key-1234567")
    assert "HTTP 403" in failure(web_cfg(search_url=f"{api.base}/search"))


def test_missing_key_is_a_start_up_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY")
    monkeypatch.delenv("JINA_API_KEY")
    cfg = load_config(None, ["tools.backend=web"])
    with pytest.raises(UserFacingError, match=r"\$SERPER_API_KEY .*\$JINA_API_KEY"):
        require_tools_backend(cfg)
    with pytest.raises(UserFacingError, match="SERPER_API_KEY"):
        make_tools(cfg)
    monkeypatch.setenv("MY_SEARCH_KEY", "")
    with pytest.raises(UserFacingError, match="MY_SEARCH_KEY"):  # empty counts as unset
        require_tools_backend(
            load_config(None, ["tools.backend=web", "tools.search_api_key_env=MY_SEARCH_KEY"])
        )
    # no key needed: a replay, the local web, a loopback endpoint with the direct reader
    require_tools_backend(load_config(None, ["tools.backend=web", "tools.web.record=replay"]))
    require_tools_backend(
        load_config(None, ["tools.backend=web", "tools.web.search_url=local", "tools.web.reader=direct"])
    )
    require_tools_backend(load_config(None, ["tools.backend=web", "tools.web.search_url=http://127.0.0.1:5/s",
                                             "tools.web.reader=direct"]))  # fmt: skip


def test_local_web_endpoint_needs_no_key_and_allows_its_pages(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY")
    with search_server("http://x", key=None) as local:
        monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", local.base + "/")
        cfg = web_cfg(search_url="local")
        assert len(search(cfg, "hamlet", 2)) == 2
        tools = WebTools(cfg)
        assert tools.search_url == f"{local.base}/search" and local.hostport in tools.allow
        assert tools.name == "web:local+direct"
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL")
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)
    with pytest.raises(UserFacingError, match="ASEARCHER_RETRIEVAL_URL"):
        WebTools(web_cfg(search_url="local"))


def test_make_tools_labels_and_protocol_card(tmp_path):
    cfg = load_config(None, ["tools.backend=web", "tools.web.record=record"])
    assert setting_label(cfg).endswith("-web-top5")
    with pytest.raises(UserFacingError, match="record_dir"):
        make_tools(cfg)  # recording, but no folder from the config or the caller
    tools = make_tools(cfg, record_dir=tmp_path / "rec")
    card = tools.describe()
    assert tools.name == "web:serper+jina"
    assert card["search"]["endpoint"] == "google.serper.dev" and card["reader"] == {
        "kind": "jina",
        "endpoint": "r.jina.ai",
    }
    assert card["record"] == {"mode": "record", "dir": str(tmp_path / "rec")}
    assert CANARY not in repr(card)
    assert tools._search is None and tools._reader is None  # clients are built on first use


def test_config_validation_and_checks():
    with pytest.raises(UserFacingError, match="host:port"):
        load_config(None, ["tools.web.allow=[127.0.0.1]"])
    with pytest.raises(UserFacingError, match="http"):
        load_config(None, ["tools.web.search_url=ftp://x"])
    cfg = load_config(None, ["tools.backend=web", "tools.web.search_url=local"])
    assert cfg.retrieval.enabled is True  # the local web is the retrieval server
    assert load_config(None, ["tools.backend=web"]).retrieval.enabled is False
    bad = load_config(None, ["tools.backend=web", "tools.web.search_url=local", "retrieval.enabled=false"])
    errors = [p.keys for p in check_config(bad) if p.level == "error"]
    assert ("tools.web.search_url", "retrieval.enabled") in errors
    replay = load_config(None, ["tools.backend=web", "tools.web.record=replay"])
    assert any(p.keys == ("tools.web.record", "tools.web.record_dir") for p in check_config(replay))
