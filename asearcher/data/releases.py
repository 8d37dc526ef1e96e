"""The three upstream releases, their layouts, and the file-level work of fetching: scan, copy, stream.

Every file that lands in a release directory is first written under a temporary name, checked (each JSONL line
parses as a JSON object, JSON parses, CSV reads), hashed, and only then renamed into place. A corrupt or truncated
line is an error naming the source file and line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from asearcher.utils.progress import progress as progress_bar

from asearcher.config.data import DataConfig
from asearcher.utils.jsonl import DataError, parse_jsonl_line

_CHUNK = 1 << 20
#: files whose progress is worth a bar
_BIG = 64 << 20


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the release directory
    limit_field: str | None = None  # DataConfig field bounding its records (None: always whole)


@dataclass(frozen=True)
class Release:
    key: str  # CLI name
    folder: str  # upstream dataset name = directory name
    repo_field: str  # DataConfig field holding the hub repo id
    files: tuple[FileSpec, ...] | None  # None: the whole tree (listed from the mirror or the hub snapshot)
    hub_patterns: tuple[str, ...] = ()  # for whole-tree releases: snapshot_download allow_patterns

    def planned(self, cfg: DataConfig) -> list[tuple[str, int | None]]:
        """(relative path, record limit) of the fixed files of this release under cfg; [] for whole trees."""
        out = []
        for f in self.files or ():
            if f.path == "wikilinks.jsonl" and not cfg.include_wikilinks:
                continue
            out.append((f.path, getattr(cfg, f.limit_field) if f.limit_field else None))
        return out


RELEASES: dict[str, Release] = {
    r.key: r
    for r in (
        Release(
            "local-knowledge",
            "ASearcher-Local-Knowledge",
            "corpus_repo",
            (
                FileSpec("wiki_corpus.jsonl", "corpus_limit"),
                FileSpec("wiki_webpages.jsonl", "pages_limit"),
                FileSpec("wikilinks.jsonl", "pages_limit"),
            ),
        ),
        Release("test-data", "ASearcher-test-data", "test_repo", None, ("*/*.json", "*/*.jsonl", "*/*.csv")),
        Release(
            "train-data",
            "ASearcher-train-data",
            "train_repo",
            (FileSpec("ASearcher-Base-35k.jsonl"), FileSpec("ASearcher-LRM-35k.jsonl")),
        ),
    )
}

RELEASE_BY_FOLDER = {r.folder: r for r in RELEASES.values()}


@dataclass
class FileStats:
    bytes: int
    sha256: str
    records: int | None  # JSONL/CSV rows or JSON list items; None for other files
    limit_reached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "sha256": self.sha256,
            "records": self.records,
            "limit_reached": self.limit_reached,
        }


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _bar(total: int | None, desc: str, unit: str = "B"):
    return progress_bar(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        leave=False,
        disable=(unit == "B" and (total or 0) < _BIG),
    )


def _check_jsonl_line(raw: bytes, label: str, lineno: int) -> None:
    parse_jsonl_line(raw, f"{label}:{lineno}")


def scan_file(path: str | Path, label: str | None = None) -> FileStats:
    """Validate and hash one release file; `label` names the file in errors (e.g. the mirror source)."""
    path = Path(path)
    label = label or str(path)
    size = path.stat().st_size
    suffix = Path(path.name.removesuffix(".tmp")).suffix.lower()  # the kind of the file being installed
    h = hashlib.sha256()
    records: int | None = None
    # test.json(l) may hold a JSON list or JSONL whatever its suffix: sniff the first character
    if suffix in (".json", ".jsonl"):
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            suffix = ".json"
        elif suffix == ".json" and not _parses_whole(path):
            suffix = ".jsonl"
    if suffix == ".jsonl":
        records = 0
        with open(path, "rb") as f, _bar(size, f"check {path.name}") as bar:
            for lineno, raw in enumerate(f, start=1):
                h.update(raw)
                bar.update(len(raw))
                if raw.strip():
                    _check_jsonl_line(raw, label, lineno)
                    records += 1
        return FileStats(size, h.hexdigest(), records)
    digest = sha256_file(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except json.JSONDecodeError as e:
            raise DataError(f"{label}:{e.lineno}: malformed JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{label}: not UTF-8: {e}") from None
        records = len(data) if isinstance(data, list) else None
    elif suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                records = max(sum(1 for _ in reader) - 1, 0)  # minus the header
            except (csv.Error, UnicodeDecodeError) as e:
                raise DataError(f"{label}:{reader.line_num}: bad CSV: {e}") from None
    return FileStats(size, digest, records)


def _parses_whole(path: Path) -> bool:
    try:
        json.loads(path.read_bytes().decode("utf-8-sig"))
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def install(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


#: files at least this big are hardlinked from the mirror instead of copied (a 23 GB corpus need not exist twice).
#: Smaller files are copied so that nothing writing into a release directory can ever reach the mirror.
HARDLINK_MIN_BYTES = 256 << 20


def link_or_copy(src: Path, dst: Path) -> None:
    """Hardlink big files when the filesystem allows, else copy. Installed files are only ever replaced (rename),
    never written in place, so a hardlinked mirror file is never modified through the release directory."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        if src.stat().st_size < HARDLINK_MIN_BYTES:
            raise OSError("small file: copy")
        os.link(src, dst)
    except OSError:
        with (
            open(src, "rb") as fi,
            open(dst, "wb") as fo,
            _bar(src.stat().st_size, f"copy {src.name}") as bar,
        ):
            while chunk := fi.read(_CHUNK):
                fo.write(chunk)
                bar.update(len(chunk))


def copy_first_records(src: IO[bytes], dst: Path, limit: int, label: str) -> FileStats:
    """Write the first `limit` JSONL records of a byte stream to dst (validated, hashed); stop reading there.

    Used to take a bounded sample of the 20+ GB corpus: only the bytes of the first `limit` lines are read.
    On any error dst is removed, so no half-written file is left behind.
    """
    try:
        return _copy_first_records(src, dst, limit, label)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def _copy_first_records(src: IO[bytes], dst: Path, limit: int, label: str) -> FileStats:
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    n = size = 0
    with open(dst, "wb") as out, _bar(limit, f"stream {Path(label).name}", unit="rec") as bar:
        for lineno, raw in enumerate(_lines(src), start=1):
            if not raw.strip():
                continue
            _check_jsonl_line(raw, label, lineno)
            if not raw.endswith(b"\n"):
                raw += b"\n"  # a complete last line without newline: keep the file line-terminated
            out.write(raw)
            h.update(raw)
            size += len(raw)
            n += 1
            bar.update(1)
            if n >= limit:
                break
        out.flush()
        os.fsync(out.fileno())
    return FileStats(size, h.hexdigest(), n, limit_reached=n >= limit)


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    # fsspec files (HfFileSystem) support readline but not always iteration; readline works everywhere
    if isinstance(f, io.TextIOBase):  # pragma: no cover - defensive
        raise TypeError("copy_first_records needs a binary stream")
    while True:
        raw = f.readline()
        if not raw:
            return
        yield raw


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
