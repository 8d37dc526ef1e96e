"""Which Wikipedia pages a page links to: the graph that injection walks.

Two sources behind one interface:
- `ReleasedLinks`: the Local-Knowledge release's `wikilinks.jsonl` (10.8 GB at paper scale, read through the
  byte-offset store). A row is `{"url": ..., "links": [...], "in_links": [...]}` or `{url: {"links": ...}}`;
  a page's neighbours are its out-links then its in-links, as the released synthesis code uses both.
- `DerivedLinks`: for a corpus without that file (the mirror), a page links to every other page of the corpus
  whose title it mentions with a capital letter (word n-grams against the title table). Out-links only.

Every neighbour returned is a page the page store has, so injection never follows a link into nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from asearcher.errors import UserFacingError
from asearcher.retrieval.stores import JsonlStore, PageStore
from asearcher.retrieval.urls import normalize_url, page_key, title_of
from asearcher.utils.jsonl import DataError

_WORD = re.compile(r"\w+")
MAX_TITLE_WORDS = 8
MIN_TITLE_CHARS = 4


class LinkGraph(Protocol):
    def __len__(self) -> int: ...

    def page_url_at(self, i: int) -> str:
        """The URL of the i-th page of the graph (for sampling root pages)."""
        ...

    def neighbors(self, url: str) -> list[str]:
        """URLs of the pages linked with `url` that the page store has, in a stable order."""
        ...


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _title_words(title: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _words(title))


class DerivedLinks:
    """Links by title mention, computed per page on first use (the title table is built once)."""

    def __init__(self, pages: PageStore):
        if pages.mode != "memory":
            raise UserFacingError(
                f"{pages.path} is too large to derive page links from; give the release's wikilinks.jsonl as "
                "synth.links_file (fetch-data gets it with the ASearcher-Local-Knowledge release)"
            )
        self.pages = pages
        self._urls: list[str] = []
        self._titles: dict[tuple[str, ...], str] = {}
        for row in pages.rows():
            url = normalize_url(str(row["url"]))
            self._urls.append(url)
            title = title_of(url) or ""
            for name in _names(title):
                words = _title_words(name)
                if 0 < len(words) <= MAX_TITLE_WORDS and len(name) >= MIN_TITLE_CHARS:
                    self._titles.setdefault(words, url)
        self._cache: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._urls)

    def page_url_at(self, i: int) -> str:
        return self._urls[i]

    def neighbors(self, url: str) -> list[str]:
        key = page_key(url)
        if key in self._cache:
            return self._cache[key]
        row = self.pages.lookup(url)
        found: list[str] = []
        if row is not None:
            own = normalize_url(str(row["url"]))
            words = _words(str(row["contents"]))
            lower = [w.lower() for w in words]
            seen = {own}
            for i in range(len(words)):
                if not words[i][:1].isupper():  # names, not common nouns that happen to be titles
                    continue
                for n in range(min(MAX_TITLE_WORDS, len(words) - i), 0, -1):
                    hit = self._titles.get(tuple(lower[i : i + n]))
                    if hit is not None:
                        if hit not in seen:
                            seen.add(hit)
                            found.append(hit)
                        break
        self._cache[key] = found
        return found


def _names(title: str) -> Iterable[str]:
    """A title, and for "Name (qualifier)" also the bare name."""
    yield title
    bare = re.sub(r"\s*\([^)]*\)\s*$", "", title)
    if bare != title:
        yield bare


class ReleasedLinks:
    """wikilinks.jsonl: neighbours are out-links then in-links, kept only where the page store has the page."""

    def __init__(self, path: str | Path, pages: PageStore, **store_kw: Any):
        self.pages = pages
        self.store = JsonlStore(path, _link_row_key, name="links", **store_kw)

    def __len__(self) -> int:
        return len(self.store)

    def page_url_at(self, i: int) -> str:
        return normalize_url(_link_row(self.store.row_at(i), str(self.store.path))[0])

    def neighbors(self, url: str) -> list[str]:
        row = self.store.get(page_key(url))
        if row is None:
            return []
        _, links = _link_row(row, str(self.store.path))
        own, out, seen = page_key(url), [], set()
        for u in links:
            k = page_key(u)
            if k != own and k not in seen and self.pages.get(k) is not None:
                seen.add(k)
                out.append(normalize_url(u))
        return out


def _link_row(row: dict, where: str) -> tuple[str, list[str]]:
    if "url" in row:
        url, body = row["url"], row
    elif len(row) == 1:
        url, body = next(iter(row.items()))
    else:
        raise DataError(
            f"{where}: a links row needs 'url' (or one url -> {{links}} entry), got keys {sorted(row)}"
        )
    if not isinstance(url, str) or not isinstance(body, dict):
        raise DataError(f"{where}: malformed links row for {str(url)[:80]!r}")
    links = [u for key in ("links", "in_links") for u in (body.get(key) or []) if isinstance(u, str)]
    return url, links


def _link_row_key(row: dict) -> str:
    return page_key(_link_row(row, "links row")[0])


def open_link_graph(pages: PageStore, links_file: str | Path | None) -> LinkGraph:
    """The release's link file when given, else links derived from the pages."""
    if links_file is not None:
        return ReleasedLinks(links_file, pages)
    return DerivedLinks(pages)
