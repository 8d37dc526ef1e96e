"""Test servers on 127.0.0.1 for the web tools: a Serper-format search API, a page server with misbehaving
routes, and a Jina-style reader. Each runs in a thread (http.server) and records the requests it saw."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

CANARY = "canary-key-8f3a9c1e5d7b"  # the API key the tests set: it must never appear in files or errors

HTML_PAGE = (
    "<!doctype html><html><head><title>Hamlet</title><style>p {color: red}</style>"
    "<script>var secret = 'script text';</script></head><body><nav>Main menu</nav>"
    "<h1>Hamlet</h1><p>Hamlet is a <b>tragedy</b> by William Shakespeare.</p>"
    "<p>It was written around 1600.<br>Second line.</p><ul><li>Act one</li><li>Act two</li></ul>"
    "<!-- a comment --><footer>Footer links</footer></body></html>"
)


class Server:
    """A threaded HTTP server on 127.0.0.1 with routes `path -> fn(handler)`; `requests` lists (method, path,
    headers) of everything it was sent."""

    def __init__(self, routes: dict[str, Any], prefix_routes: dict[str, Any] | None = None):
        self.routes = routes
        self.prefix_routes = prefix_routes or {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stopping = threading.Event()
        self.counts: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _dispatch(self):
                server.requests.append((self.command, self.path, dict(self.headers)))
                server.counts[self.path] = server.counts.get(self.path, 0) + 1
                fn = server.routes.get(self.path.split("?")[0])
                if fn is None:
                    fn = next((f for p, f in server.prefix_routes.items() if self.path.startswith(p)), None)
                if fn is None:
                    return send(self, 404, b"not found", "text/plain")
                try:
                    fn(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _dispatch
            do_POST = _dispatch

        Handler.server_obj = self  # routes reach their Server as h.server_obj
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.hostport = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str | None, headers: dict | None = None):
    h.send_response(status)
    if ctype is not None:
        h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def body_json(h: BaseHTTPRequestHandler) -> Any:
    n = int(h.headers.get("Content-Length") or 0)
    return json.loads(h.rfile.read(n) or b"null")


# ---- the search API ----------------------------------------------------------------------------------------------


def search_server(page_base: str, *, key: str | None = CANARY) -> Server:
    """POST /search (Serper format; 403 without the key); /flaky answers 429 twice, then like /search;
    /broken 500 always; /notjson 200 with text; /echo 400 quoting the request's key header."""

    def search(h):
        req = body_json(h)
        if key is not None and h.headers.get("X-API-KEY") != key:
            return send(h, 403, b'{"message": "Unauthorized."}', "application/json")
        q, num = req["q"], int(req.get("num", 10))
        organic = [
            {"title": f"{q} result {i}", "link": f"{page_base}/page{i}", "snippet": f"snippet {i} of {q}", "position": i + 1}
            for i in range(num + 2)  # more than asked: the client keeps topk
        ]  # fmt: skip
        send(h, 200, json.dumps({"searchParameters": req, "organic": organic}).encode(), "application/json")

    def flaky(h):
        if h.server_obj.counts[h.path] <= 2:
            body_json(h)
            return send(h, 429, b"slow down", "text/plain")
        search(h)

    def echo(h):
        body_json(h)
        send(h, 400, f"bad key {h.headers.get('X-API-KEY')}".encode(), "text/plain")

    def notjson(h):
        body_json(h)
        send(h, 200, b"<html>not json</html>", "text/html")

    def broken(h):
        body_json(h)
        send(h, 500, b"internal error", "text/plain")

    def slow(h):
        body_json(h)
        h.server_obj.stopping.wait(5)
        search(h)

    return Server(
        {
            "/search": search,
            "/flaky": flaky,
            "/echo": echo,
            "/notjson": notjson,
            "/broken": broken,
            "/slow": slow,
        }
    )


# ---- the page server ---------------------------------------------------------------------------------------------


def page_server(other_port: int | None = None) -> Server:
    """Pages that behave and pages that do not (see each route)."""

    def html(h):
        send(h, 200, HTML_PAGE.encode(), "text/html; charset=utf-8")

    def plain(h):
        send(h, 200, b"Plain text page.\nLine two.", "text/plain")

    def slow(h):  # headers at once, then nothing for 5 s
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "100")
        h.end_headers()
        h.wfile.flush()
        h.server_obj.stopping.wait(5)

    def trickle(h):  # a byte every 0.2 s: no read times out, the whole read does
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", "100")
        h.end_headers()
        for _ in range(100):
            if h.server_obj.stopping.wait(0.2):
                return
            h.wfile.write(b"x")
            h.wfile.flush()

    def huge(h):  # 3 MB, no Content-Length (chunk by chunk, then close)
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(300):
            h.wfile.write(b"y" * 10_000)
        h.close_connection = True

    def huge_declared(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Content-Length", str(50_000_000))
        h.end_headers()
        h.wfile.write(b"z" * 1000)
        h.close_connection = True

    def broken(h):  # promises 1000 bytes, sends 100, closes
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"<html><body>" + b"a" * 88)
        h.wfile.flush()
        h.close_connection = True

    def redirect(to: str, status: int = 302):
        return lambda h: send(h, status, b"", "text/plain", {"Location": to})

    def chain(h):
        n = int(h.path.rsplit("/", 1)[1])
        send(h, 302, b"", "text/plain", {"Location": f"/chain/{n - 1}" if n > 0 else "/html"})

    def latin1(h):
        send(
            h,
            200,
            "<html><body><p>Café à la crème</p></body></html>".encode("latin-1"),
            "text/html; charset=ISO-8859-1",
        )

    def latin1_nocharset(h):
        send(h, 200, "<html><body><p>Café à la crème</p></body></html>".encode("latin-1"), "text/html")

    def meta_charset(h):
        body = '<html><head><meta charset="windows-1251"></head><body><p>Привет</p></body></html>'
        send(h, 200, body.encode("cp1251"), "text/html")

    def bogus_charset(h):
        send(h, 200, "<p>naïve</p>".encode(), "text/html; charset=x-no-such-charset")

    def flaky(h):
        if h.server_obj.counts[h.path] <= 2:
            return send(h, 503, b"busy", "text/plain")
        plain(h)

    routes = {
        "/html": html,
        "/plain": plain,
        "/slow": slow,
        "/trickle": trickle,
        "/huge": huge,
        "/huge-declared": huge_declared,
        "/broken": broken,
        "/pdf": lambda h: send(h, 200, b"%PDF-1.4 binary", "application/pdf"),
        "/image": lambda h: send(h, 200, b"\x89PNG\r\n", "image/png"),
        "/latin1": latin1,
        "/latin1-nocharset": latin1_nocharset,
        "/meta-charset": meta_charset,
        "/bogus-charset": bogus_charset,
        "/leak": lambda h: send(h, 200, f"a page that quotes the key {CANARY} back".encode(), "text/plain"),
        "/gone": lambda h: send(h, 410, b"gone", "text/plain"),
        "/forbidden": lambda h: send(h, 403, b"no", "text/plain"),
        "/error": lambda h: send(h, 500, b"boom", "text/plain"),
        "/flaky": flaky,
        "/relative": redirect("html"),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a", 301),
        "/no-location": lambda h: send(h, 302, b"", "text/plain"),
        "/to-file": redirect("file:///etc/passwd"),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
    }
    if other_port is not None:
        routes["/to-other"] = redirect(f"http://127.0.0.1:{other_port}/secret")
        routes["/to-other-decimal"] = redirect(f"http://2130706433:{other_port}/secret")
    return Server(routes, {"/chain/": chain})


def reader_server() -> Server:
    """A Jina-style reader: GET /r/<url> -> the URL's 'text' (and the Authorization header it got, echoed)."""

    def read(h):
        url = unquote(h.path[len("/r/") :])
        if url.endswith("/missing"):
            return send(h, 404, b"", "text/plain")
        if url.endswith("/echo"):
            return send(
                h, 422, f"cannot read; auth was {h.headers.get('Authorization')}".encode(), "text/plain"
            )
        send(h, 200, f"Title: page\n\nText of {url}".encode(), "text/plain; charset=utf-8")

    return Server({}, {"/r/": read})
