"""Recordings of web tool responses: plain JSON-lines files a user can share next to results.

A recording folder holds `search.jsonl` and `access.jsonl`, one response per line:

    {"tool": "search", "request": {"query": "...", "topk": 5}, "ok": true,
     "response": [{"url": "...", "contents": "\\"Title\\"\\nsnippet"}, ...]}
    {"tool": "access", "request": {"url": "https://..."}, "ok": true, "response": "page text" | null}
    {"tool": "access", "request": {"url": "http://10.0.0.1/"}, "ok": false, "error": "refused URL ..."}

and `meta.json` (the tool setting that recorded it: search host, reader, caps; never a key). The request is the
normalized one (search: whitespace collapsed; access: the URL without its #fragment). When a request occurs more
than once, the last line wins. Every line passes the secrets redaction before it is written. Lines a crashed run
left half-written are skipped when loading.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

from asearcher.errors import UserFacingError
from asearcher.utils.secrets import redact_obj

log = logging.getLogger(__name__)

FORMAT = "asearcher-web-tools-recording/1"
TOOLS = ("search", "access")


def search_request(query: str, topk: int) -> dict[str, Any]:
    return {"query": " ".join(query.split()), "topk": int(topk)}


def access_request(url: str) -> dict[str, Any]:
    return {"url": urldefrag(url.strip())[0] if isinstance(url, str) else url}


def request_key(tool: str, request: dict[str, Any]) -> str:
    return tool + "\t" + json.dumps(request, sort_keys=True, ensure_ascii=False)


class Recording:
    """The responses of one recording folder, in memory, with appends going to its files."""

    def __init__(self, directory: str | Path, *, load: bool, must_exist: bool = False):
        self.dir = Path(directory)
        self.entries: dict[str, dict[str, Any]] = {}
        self._files: dict[str, Any] = {}
        self._lock = threading.Lock()
        if must_exist and not self.dir.is_dir():
            raise UserFacingError(
                f"tools.web.record is 'replay' but the recording folder {str(self.dir)!r} does not exist: record "
                "it first (record: record or cache) or point tools.web.record_dir at a shared recording"
            )
        if load:
            for tool in TOOLS:
                self._load(tool)

    def _load(self, tool: str) -> None:
        path = self.dir / f"{tool}.jsonl"
        if not path.exists():
            return
        bad = 0
        for raw in path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                e = json.loads(raw)
                if e.get("tool") != tool or not isinstance(e.get("request"), dict) or "ok" not in e:
                    raise ValueError("not a recording line")
            except (ValueError, AttributeError):
                bad += 1
                continue
            self.entries[request_key(tool, e["request"])] = e
        if bad:
            log.warning("%s: skipped %d malformed line(s) (a run that stopped mid-write?)", path, bad)

    def get(self, tool: str, request: dict[str, Any]) -> dict[str, Any] | None:
        return self.entries.get(request_key(tool, request))

    def put(self, tool: str, request: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        """Store and append one response ({'ok': True, 'response': ...} or {'ok': False, 'error': ...})."""
        line = redact_obj({"tool": tool, "request": request, **entry})
        text = json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n"
        with self._lock:
            self.entries[request_key(tool, request)] = line
            f = self._files.get(tool)
            if f is None:
                self.dir.mkdir(parents=True, exist_ok=True)
                f = self._files[tool] = open(self.dir / f"{tool}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            f.write(text)
            f.flush()
        return line

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps(redact_obj({"format": FORMAT, **meta}), indent=2, sort_keys=True) + "\n"
        (self.dir / "meta.json").write_text(body, encoding="utf-8")

    def read_meta(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
