"""Page bodies as text: the content-type decision, the charset, and HTML to clean text (BeautifulSoup).

HTML becomes its visible text, one line per block element (paragraphs, headings, list items, table rows),
without scripts, styles, forms, navigation chrome or comments; the page title comes first. text/plain (and
markdown) passes through. Any other type (PDF, images, archives) is not a text page. The charset comes from the
Content-Type header, else a <meta> tag (HTML), else UTF-8 when the bytes are valid UTF-8, else cp1252; an unknown
charset name falls back the same way, and undecodable bytes become U+FFFD: decoding never fails.
"""

from __future__ import annotations

import codecs
import re

from bs4 import BeautifulSoup, Comment

HTML_TYPES = {"text/html", "application/xhtml+xml"}
TEXT_TYPES = {"text/plain", "text/markdown", "text/x-markdown"}

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)
_DROP = [
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "embed",
    "head",
    "form",
]
_CHROME = ["nav", "footer", "aside"]
_BLOCKS = [
    "p", "div", "section", "article", "main", "header", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
    "dl", "dt", "dd", "tr", "table", "blockquote", "pre", "figure", "figcaption", "caption", "hr", "address",
    "details", "summary",
]  # fmt: skip


def media_type(content_type: str | None) -> str:
    """'text/html' of 'text/html; charset=utf-8' ('' when missing)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def kind_of(content_type: str | None, head: bytes) -> str | None:
    """'html', 'text', or None (not a text page). Without a Content-Type, the first bytes decide."""
    mt = media_type(content_type)
    if mt in HTML_TYPES:
        return "html"
    if mt in TEXT_TYPES:
        return "text"
    if mt:
        return None
    start = head.lstrip()[:256].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in start:
        return "html"
    return "text" if b"\x00" not in head[:1024] else None


def header_charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset" and v.strip().strip("\"'"):
            return v.strip().strip("\"'")
    return None


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode(body: bytes, content_type: str | None, html: bool) -> str:
    """The body as text (see the module docstring for the charset order); never raises."""
    enc = _codec(header_charset(content_type))
    if enc is None and html:
        m = _META_CHARSET.search(body[:4096])
        enc = _codec(m.group(1).decode("ascii", "replace")) if m else None
    if enc is None:
        if body.startswith(codecs.BOM_UTF8):
            enc = "utf-8-sig"
        else:
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                enc = "cp1252"
    try:
        return body.decode(enc, errors="replace")
    except Exception:  # a codec that fails on its own (rare): never crash a page read on a charset
        return body.decode("latin-1")


def _clean_lines(text: str) -> str:
    lines, blank = [], False
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if line:
            lines.append(line)
            blank = False
        elif lines and not blank:
            lines.append("")
            blank = True
    return "\n".join(lines).strip()


def html_to_text(html: str) -> str:
    """The visible text of an HTML page, title first, one line per block."""
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for c in soup.find_all(string=lambda s: isinstance(s, Comment)):
        c.extract()
    for tag in soup.find_all(_DROP + _CHROME):
        if not tag.decomposed:  # not already gone with an enclosing dropped tag
            tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | " if tag.find_next_sibling(["td", "th"]) else "")
    for tag in soup.find_all(_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    body = _clean_lines(soup.get_text())
    if title and not body.startswith(title):
        body = f"{title}\n\n{body}" if body else title
    return body


def page_text(body: bytes, content_type: str | None) -> str | None:
    """Text of a page body, or None when it is not a text page (the caller names the type)."""
    kind = kind_of(content_type, body[:2048])
    if kind is None:
        return None
    text = decode(body, content_type, kind == "html")
    return html_to_text(text) if kind == "html" else text
