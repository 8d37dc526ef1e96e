"""Wikipedia URL normalisation for /access.

The corpus stores page URLs as `https://en.wikipedia.org/w/index.php?title=Beveridge,%20Victoria` (spaces as
%20, `&` and `/` escaped, `(),.'-:!;` kept, everything else percent-encoded). Agents and models produce many variants of the same page:
`/wiki/Beveridge,_Victoria`, `index.php/Title`, unescaped spaces, mobile hosts, `#section` anchors. Every variant
maps to one lookup key (the decoded title with `_` as space and a capitalised first letter, as MediaWiki does), so
the page store matches them all without rewriting the stored rows.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlsplit

CANONICAL_PREFIX = "https://en.wikipedia.org/w/index.php?title="
# Characters the corpus leaves unescaped in titles (measured over the release's URLs).
_TITLE_SAFE = "()',.-:!;~"


def _title_from_url(url: str) -> tuple[str, str] | None:
    """(host, raw title) of a Wikipedia article URL, or None if the URL names no article."""
    u = url.strip()
    if not u:
        return None
    if "://" not in u:
        u = "https://" + u.lstrip("/")
    # Upstream server rewrite: `index.php/Title` is the same page as `index.php?title=Title`.
    u = u.replace("index.php/", "index.php?title=", 1)
    parts = urlsplit(u)
    host = parts.netloc.lower().split("@")[-1].split(":")[0]
    host = host.replace(".m.wikipedia.org", ".wikipedia.org")
    if host.startswith("www."):
        host = host[4:]
    if parts.path.startswith("/wiki/"):
        return host, parts.path[len("/wiki/") :]
    if parts.path.startswith("/w/index.php") or parts.path == "/index.php":
        # parse_qs would decode '+' as space; titles may contain a literal '+', so split by hand.
        for field in parts.query.split("&"):
            if field.startswith("title="):
                return host, field[len("title=") :]
        q = parse_qs(parts.query)
        if "title" in q:
            return host, q["title"][0]
    return None


def title_of(url: str) -> str | None:
    """The decoded article title of a Wikipedia URL (`_` -> space), or None."""
    found = _title_from_url(url)
    if found is None:
        return None
    title = unquote(found[1]).replace("_", " ").strip()
    title = " ".join(title.split())
    return title or None


def page_key(url: str) -> str:
    """Lookup key: `host|Title` for Wikipedia article URLs, else the stripped URL itself."""
    found = _title_from_url(url)
    title = title_of(url)
    if found is None or title is None:
        return url.strip()
    return f"{found[0]}|{title[:1].upper()}{title[1:]}"


def normalize_url(url: str) -> str:
    """The corpus's spelling of a Wikipedia article URL (unchanged for other URLs)."""
    found = _title_from_url(url)
    title = title_of(url)
    if found is None or title is None:
        return url.strip()
    title = title[:1].upper() + title[1:]
    return f"https://{found[0]}/w/index.php?title=" + quote(title, safe=_TITLE_SAFE)
