"""Atomic writes: a reader (or a resumed run after a crash) sees the old file or directory, or the new one, never
half of one. Every writer in the suite goes through these helpers.

    atomic_write_text(path, text)            # one text file
    with atomic_path(path) as tmp: ...       # a file written by a library that wants a path (np.savez, torch.save)
    with atomic_dir(path) as tmp: ...        # a directory (model dirs, checkpoints), swapped in whole
    replace_dir(work_dir, path)              # a finished resumable work directory, swapped in whole
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path` (ending in `suffix`, for libraries that append an extension unless it is
    there, like np.savez); it replaces `path` when the block succeeds and is removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the real name stays at the end, so tools that look at a file's extension see the same kind of file
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temp directory beside `path`; when the block succeeds it replaces `path` (any old content is
    moved aside first and deleted after), when it fails it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def replace_dir(src: str | Path, path: str | Path) -> None:
    """Put the finished directory `src` at `path`, replacing what is there (moved aside first, deleted after), so
    `path` is always either the old directory or the new one. For builds that keep their own resumable work dir."""
    src, path = Path(src), Path(path)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(src, path)
    shutil.rmtree(old, ignore_errors=True)
