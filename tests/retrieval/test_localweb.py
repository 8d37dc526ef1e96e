"""The local web: the retrieval server's Serper-format /search and its /wiki/<Title> pages (a real server subprocess
on 127.0.0.1 over the mirror index and pages), and the pure parts of asearcher/retrieval/localweb.py."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest

from asearcher.config import RetrievalConfig
from asearcher.retrieval.localweb import (
    BadRequest,
    organic,
    page_html,
    page_path,
    parse_search,
    passage_text,
    passage_title,
)

CFG = RetrievalConfig()
TIGHT = RetrievalConfig(server={"max_request_cost": 100})  # 5 terms x num 30 = 150: over


# ---- pure parts ---------------------------------------------------------------------------------------------------
def test_parse_search_defaults_and_limits():
    req = parse_search(b'{"q": "who founded citibank"}', CFG)
    assert (req.q, req.num, req.cost) == ("who founded citibank", 10, 30)
    assert parse_search(b'{"q": "x", "num": 3}', CFG).num == 3
    assert parse_search(b'{"q": "x", "num": null}', CFG).num == 10
    for body, status, words in [
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"num": 3}', 422, "missing field 'q'"),
        (b'{"q": 7}', 422, "'q' must be a string"),
        (b'{"q": "  "}', 422, "empty"),
        (b'{"q": "x", "num": 0}', 422, "between 1 and 100"),
        (b'{"q": "x", "num": true}', 422, "'num' must be an integer"),
        (b'{"q": "x", "num": "5"}', 422, "'num' must be an integer"),
        (json.dumps({"q": "x" * 5000}).encode(), 422, "max_query_chars"),
        (json.dumps({"q": "five words in this query", "num": 30}).encode(), 422, "max_request_cost"),
    ]:
        with pytest.raises(BadRequest) as e:
            parse_search(body, TIGHT)
        assert e.value.status == status and words in e.value.message, body[:40]


def test_titles_snippets_and_links():
    row = {"contents": '"Beveridge, Victoria"\nBeveridge is a town.', "url": "https://en.wikipedia.org/w/"
           "index.php?title=Beveridge,%20Victoria"}  # fmt: skip
    assert passage_title(row) == "Beveridge, Victoria" and passage_text(row) == "Beveridge is a town."
    assert passage_title({"contents": '"AC/DC"\nband'}) == "AC/DC"  # no URL: the quoted first line
    assert passage_text({"contents": "no title line"}) == "no title line"
    assert page_path("Beveridge, Victoria") == "/wiki/Beveridge,_Victoria"
    assert page_path("AC/DC") == "/wiki/AC%2FDC" and page_path("C++ (language)") == "/wiki/C%2B%2B_(language)"
    out = organic([(row, 3.5), ({"contents": '"X"\ny'}, 1.0)], "http://127.0.0.1:9")
    assert out == [
        {"title": "Beveridge, Victoria", "link": "http://127.0.0.1:9/wiki/Beveridge,_Victoria",
         "snippet": "Beveridge is a town.", "position": 1},
        {"title": "X", "link": "http://127.0.0.1:9/wiki/X", "snippet": "y", "position": 2},
    ]  # fmt: skip


def test_page_html_escapes_and_splits_paragraphs():
    html = page_html("A <b> & C", "A <b> & C\n\nFirst <script>x</script>.\n\n\nSecond.")
    assert "<title>A &lt;b&gt; &amp; C</title>" in html and "<h1>A &lt;b&gt; &amp; C</h1>" in html
    assert "<p>First &lt;script&gt;x&lt;/script&gt;.</p>\n<p>Second.</p>" in html
    assert html.count("<p>") == 2  # the title paragraph becomes the h1


# ---- the real server ----------------------------------------------------------------------------------------------


def _search(server, body, headers=None) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body)
    return httpx.post(server.url + "/search", content=data, headers=headers or {}, timeout=30)


@pytest.mark.java
def test_search_answers_in_serper_format(retrieval_server):
    r = _search(retrieval_server, {"q": "Who founded the City Bank of New York?", "num": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["searchParameters"] == {
        "q": "Who founded the City Bank of New York?", "num": 3, "type": "search", "engine": "asearcher-local",
    }  # fmt: skip
    hits = body["organic"]
    assert [h["position"] for h in hits] == [1, 2, 3]
    assert all(set(h) == {"title", "link", "snippet", "position"} for h in hits)
    assert all(h["link"].startswith(retrieval_server.url + "/wiki/") for h in hits)
    assert any("Citibank" in h["title"] or "City Bank" in h["snippet"] for h in hits)
    # the same passages, in the same order, as /retrieve
    docs = httpx.post(
        retrieval_server.url + "/retrieve",
        json={"queries": ["Who founded the City Bank of New York?"], "topk": 3},
    ).json()["result"][0]
    assert [h["snippet"] for h in hits] == [d["contents"].split("\n", 1)[1].strip() for d in docs]
    assert (
        len(_search(retrieval_server, {"q": "Voyager 2 Uranus"}).json()["organic"]) == 10
    )  # Serper's default


@pytest.mark.java
def test_every_linked_page_is_served_as_html(retrieval_server):
    """A link is served exactly when /access holds its page (the pages file may lack a passage's page)."""
    links = set()
    for q in ("Citibank history", "Voyager 2 Uranus", "Beveridge Victoria", "William Shakespeare Hamlet"):
        links |= {h["link"] for h in _search(retrieval_server, {"q": q, "num": 5}).json()["organic"]}
    assert len(links) >= 5
    served = 0
    for link in sorted(links):
        wiki_url = "https://en.wikipedia.org" + urlsplit(link).path
        page = httpx.post(retrieval_server.url + "/access", json={"urls": [wiki_url]}).json()["result"][0]
        r = httpx.get(link, timeout=30)
        assert r.status_code == (404 if page is None else 200), (link, r.text[:200])
        if page is not None:
            served += 1
            assert r.headers["content-type"].startswith("text/html")
            assert r.text.startswith("<!DOCTYPE html>") and "<h1>" in r.text and "<p>" in r.text, link
    assert served >= len(links) // 2


@pytest.mark.java
def test_wiki_page_content_and_unknown_pages(retrieval_server):
    r = httpx.get(retrieval_server.url + "/wiki/Citibank", timeout=30)
    assert r.status_code == 200
    assert "<title>Citibank</title>" in r.text and "<h1>Citibank</h1>" in r.text
    assert "<p>resulting in a net profit for the U.S. federal government." in r.text
    # other spellings of the same title reach the same page
    assert httpx.get(retrieval_server.url + "/wiki/citibank").text == r.text
    missing = httpx.get(retrieval_server.url + "/wiki/No_such_page_in_the_mirror_xyz", timeout=30)
    assert missing.status_code == 404
    err = missing.json()
    assert set(err) == {"error", "detail"} and "No such page in the mirror xyz" in err["error"]
    assert httpx.get(retrieval_server.url + "/wiki/", timeout=30).status_code == 404
    assert httpx.get(retrieval_server.url + "/wiki/" + "x" * 5000, timeout=30).status_code == 414


@pytest.mark.java
def test_links_follow_the_host_header(retrieval_server):
    hits = _search(
        retrieval_server, {"q": "Citibank", "num": 2}, headers={"host": "localweb.test:8123"}
    ).json()
    assert all(h["link"].startswith("http://localweb.test:8123/wiki/") for h in hits["organic"])
    # a Host header that is not a host[:port] is never echoed: the links name the bound address instead
    bad = _search(retrieval_server, {"q": "Citibank", "num": 2}, headers={"host": "x/<y>"}).json()
    netlocs = {urlsplit(h["link"]).netloc for h in bad["organic"]}
    assert netlocs == {urlsplit(retrieval_server.url).netloc}


@pytest.mark.java
def test_search_errors_use_the_server_format(retrieval_server):
    for body, status in [(b"{", 400), ({"q": 3}, 422), ({"q": "x", "num": 1000}, 422)]:
        r = _search(retrieval_server, body)
        assert r.status_code == status and set(r.json()) == {"error", "detail"}, r.text
    health = httpx.get(retrieval_server.url + "/health").json()
    assert health["local_web"] is True
    assert health["stats"]["requests"]["search"] >= 3 and health["stats"]["errors"]["search:422"] >= 2
