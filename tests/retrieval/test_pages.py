"""URL normalisation and the page store behind /access (in-memory and offset-index modes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asearcher.retrieval.stores import PageStore
from asearcher.retrieval.urls import normalize_url, page_key, title_of
from asearcher.utils.jsonl import DataError

CANON = "https://en.wikipedia.org/w/index.php?title=Beveridge,%20Victoria"


@pytest.mark.parametrize(
    "url",
    [
        CANON,
        "https://en.wikipedia.org/wiki/Beveridge,_Victoria",
        "https://en.wikipedia.org/w/index.php/Beveridge,_Victoria",
        "http://en.wikipedia.org/w/index.php?title=Beveridge,_Victoria&oldid=123",
        "en.wikipedia.org/wiki/Beveridge, Victoria",
        "https://en.m.wikipedia.org/wiki/beveridge,_Victoria#History",
        "https://en.wikipedia.org/wiki/Beveridge%2C_Victoria",
    ],
)
def test_url_variants_share_one_key(url: str):
    assert page_key(url) == page_key(CANON) == "en.wikipedia.org|Beveridge, Victoria"
    assert normalize_url(url) == CANON


def test_normalize_keeps_corpus_escaping():
    assert normalize_url("https://en.wikipedia.org/wiki/Law_&_Order:_Special_Victims_Unit_(season_20)") == (
        "https://en.wikipedia.org/w/index.php?title=Law%20%26%20Order:%20Special%20Victims%20Unit%20(season%2020)"
    )
    assert (
        normalize_url("https://en.wikipedia.org/wiki/AC/DC")
        == "https://en.wikipedia.org/w/index.php?title=AC%2FDC"
    )
    assert title_of("https://example.com/page") is None
    assert page_key("https://example.com/page ") == "https://example.com/page"


def test_every_mirror_page_url_round_trips(pages_file: Path):
    urls = [json.loads(line)["url"] for line in pages_file.open()]
    assert sum(normalize_url(u) == u for u in urls) == len(urls)


@pytest.mark.parametrize("mode", ["memory", "offsets"])
def test_page_store_modes(pages_file: Path, tmp_path: Path, mode: str):
    kw = {"memory_max_bytes": 0, "cache_dir": tmp_path} if mode == "offsets" else {}
    store = PageStore(pages_file, **kw)
    assert store.mode == mode and len(store) == 21214
    page = store.lookup("https://en.wikipedia.org/wiki/College_of_William_%26_Mary")
    assert page["url"] == "https://en.wikipedia.org/w/index.php?title=College%20of%20William%20%26%20Mary"
    assert store.lookup("https://en.wikipedia.org/wiki/Definitely_not_a_page_123") is None
    assert store.lookup("") is None
    for line in list(pages_file.open())[::2000]:
        row = json.loads(line)
        assert store.lookup(row["url"].replace("%20", "_")) == row
    if mode == "offsets":
        assert len(list(tmp_path.glob("*.offsets.npz"))) == 1
        again = PageStore(pages_file, **kw)  # reuses the cached offset index
        assert again.lookup(CANON.replace("Beveridge,%20Victoria", "Citibank"))["url"].endswith("Citibank")
        store.close()
        again.close()


def test_corrupt_pages_file(tmp_path: Path):
    p = tmp_path / "pages.jsonl"
    p.write_text('{"url": "https://en.wikipedia.org/w/index.php?title=A", "contents": "A"}\n{"url": "x"}\n')
    with pytest.raises(DataError, match=rf"{p}:2: pages row lacks field\(s\) contents"):
        PageStore(p)
    p.write_text('{"url": "u", "contents": "c"}\n{"url": "v", "cont')
    with pytest.raises(DataError, match=rf"{p}:2: truncated line"):
        PageStore(p, memory_max_bytes=0, cache_dir=tmp_path)
