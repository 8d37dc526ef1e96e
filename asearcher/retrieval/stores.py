"""Keyed access to rows of a big JSONL file: the page store behind /access and the doc store of the dense index.

Small files (the mirror) are parsed into a dict once. The real releases are 23-27 GB, so for those only a
compact offset index is kept in memory: sorted 64-bit key hashes + byte offsets (16 bytes per row). It is built
in one pass and cached beside the file (or in a cache dir when the data is read-only) and reused while the
file's size and mtime are unchanged. A lookup seeks, reads one line and re-checks the key, so hash collisions
cannot return a wrong row.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from asearcher.utils.progress import progress as progress_bar

from asearcher.utils.atomic import atomic_path
from asearcher.utils.jsonl import DataError, parse_jsonl_line

from .urls import page_key

log = logging.getLogger(__name__)

DEFAULT_MEMORY_MAX_BYTES = 2 << 30


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _cache_dir_for(path: Path, cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return cache_dir
    if os.access(path.parent, os.W_OK):
        return path.parent
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asearcher" / "offsets"


class JsonlStore:
    """Rows of `path` by key (`key_fn(row)`); `get(key)` returns the row dict or None."""

    def __init__(
        self,
        path: str | Path,
        key_fn: Callable[[dict], str],
        *,
        name: str,
        require: tuple[str, ...] = (),
        memory_max_bytes: int = DEFAULT_MEMORY_MAX_BYTES,
        cache_dir: str | Path | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{name} file {self.path} does not exist")
        self.name = name
        self._key_fn = key_fn
        self._require = require
        self._rows: dict[str, dict] | None = None
        self._row_list: list[dict] | None = None
        self._hashes: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._fh = None
        self._lock = threading.Lock()
        size = self.path.stat().st_size
        if size <= memory_max_bytes:
            self._load_in_memory()
        else:
            self._load_offsets(Path(cache_dir) if cache_dir else None)

    @property
    def mode(self) -> str:
        return "memory" if self._rows is not None else "offsets"

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._offsets)  # type: ignore[arg-type]

    def _parse(self, raw: bytes, lineno: int) -> dict:
        row = parse_jsonl_line(raw, f"{self.path}:{lineno}")
        missing = [k for k in self._require if k not in row]
        if missing:
            raise DataError(f"{self.path}:{lineno}: {self.name} row lacks field(s) {', '.join(missing)}")
        return row

    def _iter_raw(self, desc: str):
        size = self.path.stat().st_size
        with (
            open(self.path, "rb") as f,
            progress_bar(total=size, unit="B", unit_scale=True, desc=desc, disable=size < (256 << 20)) as bar,
        ):
            offset = 0
            for lineno, raw in enumerate(f, start=1):
                bar.update(len(raw))
                if raw.strip():
                    yield lineno, offset, raw
                offset += len(raw)

    def _load_in_memory(self) -> None:
        rows: dict[str, dict] = {}
        for lineno, _, raw in self._iter_raw(f"loading {self.name}"):
            row = self._parse(raw, lineno)
            rows.setdefault(self._key_fn(row), row)  # first row wins, as in the offset mode
        self._rows = rows

    def _load_offsets(self, cache_dir: Path | None) -> None:
        st = self.path.stat()
        tag = hashlib.sha1(
            f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.name}".encode()
        ).hexdigest()[:16]
        cache = _cache_dir_for(self.path, cache_dir) / f".{self.path.name}.{self.name}.{tag}.offsets.npz"
        if cache.exists():
            data = np.load(cache)
            self._hashes, self._offsets = data["hashes"], data["offsets"]
            log.info("%s: loaded offset index %s (%d rows)", self.name, cache, len(self._offsets))
        else:
            hashes, offsets = [], []
            for lineno, offset, raw in self._iter_raw(f"indexing {self.name} offsets"):
                hashes.append(_hash(self._key_fn(self._parse(raw, lineno))))
                offsets.append(offset)
            h = np.asarray(hashes, dtype=np.int64)
            o = np.asarray(offsets, dtype=np.int64)
            order = np.argsort(h, kind="stable")  # stable: equal hashes keep file order (first row wins)
            self._hashes, self._offsets = h[order], o[order]
            with atomic_path(cache, suffix=".npz") as tmp:
                np.savez(tmp, hashes=self._hashes, offsets=self._offsets)
            log.info("%s: wrote offset index %s (%d rows)", self.name, cache, len(o))
        self._fh = open(self.path, "rb")

    def _read_at(self, offset: int) -> dict:
        with self._lock:  # one shared handle: seek+readline must not interleave
            self._fh.seek(offset)  # type: ignore[union-attr]
            raw = self._fh.readline()  # type: ignore[union-attr]
        return self._parse(raw, -1)

    def get(self, key: str) -> dict | None:
        if self._rows is not None:
            return self._rows.get(key)
        h = _hash(key)
        i = int(np.searchsorted(self._hashes, h))
        while i < len(self._hashes) and self._hashes[i] == h:  # type: ignore[arg-type,index]
            row = self._read_at(int(self._offsets[i]))  # type: ignore[index]
            if self._key_fn(row) == key:
                return row
            i += 1
        return None

    def row_at(self, i: int) -> dict:
        """The i-th distinct row (0 <= i < len(self)), for sampling rows without holding them all."""
        if self._rows is not None:
            if self._row_list is None:
                self._row_list = list(self._rows.values())
            return self._row_list[i]
        return self._read_at(int(self._offsets[i]))  # type: ignore[index]

    def rows(self):
        """Every distinct row, in file order (memory mode) or key-hash order (offsets mode)."""
        for i in range(len(self)):
            yield self.row_at(i)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class PageStore(JsonlStore):
    """Whole Wikipedia pages (`wiki_webpages.jsonl`) by URL, matching any spelling of the same article URL."""

    def __init__(self, path: str | Path, **kw):
        super().__init__(
            path, lambda r: page_key(str(r["url"])), name="pages", require=("url", "contents"), **kw
        )

    def lookup(self, url: str) -> dict | None:
        if not isinstance(url, str) or not url.strip():
            return None
        return self.get(page_key(url))
