"""Obtain one upstream release in its own layout, with a manifest of every file (bytes, sha256, records).

Releases (written to OUTPUT/<release folder>/):
  local-knowledge  ASearcher-Local-Knowledge/{wiki_corpus.jsonl, wiki_webpages.jsonl[, wikilinks.jsonl]}
  test-data        ASearcher-test-data/<Benchmark>/...   (test.json(l), frames CSV, xbench CSV)
  train-data       ASearcher-train-data/{ASearcher-Base-35k.jsonl, ASearcher-LRM-35k.jsonl}

Sources:
  mirror  hardlink/copy from a local directory laid out like the releases (--mirror, data.mirror, $ASEARCHER_MIRROR)
  hub     the Hugging Face hub (data.*_repo at data.revision). With --corpus-limit/--pages-limit only the first N
          lines of the corpus files are streamed over HTTP, never the whole 61 GB release.
  auto    the mirror when one is configured, else the hub.

Every JSONL line is checked; a corrupt or truncated line is an error naming the file and line. Files are written
as *.tmp and renamed when complete, and the manifest is updated after each file, so an interrupted run resumes
where it stopped. Re-running with the same settings and intact files does nothing (--verify re-hashes them).

Examples:
  asearcher fetch-data --release test-data --output results/releases --config configs/default.yaml
  asearcher fetch-data --release local-knowledge --output results/releases --source hub --corpus-limit 20000
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import huggingface_hub

from asearcher.config import DataConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.data.releases import (
    RELEASES,
    FileStats,
    Release,
    copy_first_records,
    install,
    link_or_copy,
    remove_tree,
    scan_file,
    sha256_file,
)
from asearcher.utils.atomic import atomic_path
from asearcher.utils.jsonl import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def _limit_arg(text: str) -> int | None:
    if text.lower() in ("all", "none", "null"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {v}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--release", required=True, choices=list(RELEASES), help="which upstream release to obtain"
    )
    p.add_argument(
        "--output", required=True, help="parent directory; the release goes to OUTPUT/<release folder>/"
    )
    p.add_argument("--source", choices=["hub", "mirror", "auto"], help="override data.source")
    p.add_argument("--mirror", help="override data.mirror (a directory holding ASearcher-* release folders)")
    p.add_argument(
        "--corpus-limit",
        type=_limit_arg,
        default=argparse.SUPPRESS,
        help="first N passages of wiki_corpus.jsonl, or 'all' (overrides data.corpus_limit)",
    )
    p.add_argument(
        "--pages-limit",
        type=_limit_arg,
        default=argparse.SUPPRESS,
        help="first N pages of wiki_webpages.jsonl, or 'all' (overrides data.pages_limit)",
    )
    p.add_argument("--revision", help="hub revision to pin (overrides data.revision)")
    p.add_argument(
        "--force", action="store_true", help="fetch again even if the manifest says it is up to date"
    )
    p.add_argument(
        "--verify", action="store_true", help="when up to date, re-hash every file against the manifest"
    )


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_source(cfg: DataConfig, mirror: Path | None) -> str:
    if cfg.source == "auto":
        return "mirror" if mirror is not None else "hub"
    return cfg.source


def _request(rel: Release, cfg: DataConfig, source: str, mirror: Path | None) -> dict[str, Any]:
    """What was asked for; a manifest whose request differs is stale."""
    return {
        "release": rel.folder,
        "source": source,
        "repo": getattr(cfg, rel.repo_field) if source == "hub" else None,
        "revision": (cfg.revision or "main") if source == "hub" else None,
        "mirror": str(mirror.resolve()) if source == "mirror" and mirror else None,
        "limits": {p: lim for p, lim in rel.planned(cfg)},
    }


def _read_manifest(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        return m if isinstance(m, dict) and m.get("version") == MANIFEST_VERSION else None
    except (OSError, json.JSONDecodeError):
        log.warning("%s is unreadable; fetching again", path)
        return None


def _write_manifest(release_dir: Path, manifest: dict) -> None:
    write_json(release_dir / MANIFEST, manifest)
    os.chmod(release_dir / MANIFEST, 0o644)  # the atomic writer's temp file is private (0600)


def _entry_intact(e: dict, release_dir: Path, mirror_dir: Path | None) -> bool:
    final = release_dir / e["path"]
    if not final.is_file() or final.stat().st_size != e["bytes"]:
        return False
    if "source_bytes" in e:  # mirror: the source must not have changed either
        src = (mirror_dir / e["path"]) if mirror_dir else None
        if src is None or not src.is_file() or src.stat().st_size != e["source_bytes"]:
            return False
    return True


class _Fetch:
    """One fetch of one release; keeps the manifest current after each installed file."""

    def __init__(
        self,
        rel: Release,
        output: Path,
        cfg: DataConfig,
        source: str,
        mirror: Path | None,
        request: dict,
        reusable: dict[str, dict],
    ):
        self.rel, self.cfg, self.source = rel, cfg, source
        self.release_dir = output / rel.folder
        self.mirror_dir = (mirror / rel.folder) if mirror else None
        self.staging = output / f".{rel.folder}.partial"
        self.reusable = reusable
        self.manifest: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "release": rel.folder,
            "source": source,
            "repo": request["repo"],
            "revision": request["revision"],
            "mirror": request["mirror"],
            "request": request,
            "complete": False,
            "created": _now(),
            "files": [],
        }

    @property
    def repo(self) -> str:
        return getattr(self.cfg, self.rel.repo_field)

    def _hub_label(self, rel_path: str) -> str:
        return f"hf://datasets/{self.repo}@{self.cfg.revision or 'main'}/{rel_path}"

    def _record(self, rel_path: str, stats: FileStats, limit: int | None, origin: str, **extra: Any) -> None:
        entry = {"path": rel_path, **stats.as_dict(), "limit": limit, "origin": origin, **extra}
        self.manifest["files"].append(entry)
        _write_manifest(self.release_dir, self.manifest)
        log.info("%s/%s: %s records, %d bytes", self.rel.folder, rel_path, stats.records, stats.bytes)

    def _reuse(self, rel_path: str, limit: int | None) -> bool:
        e = self.reusable.get(rel_path)
        if e is None or e.get("limit") != limit or not _entry_intact(e, self.release_dir, self.mirror_dir):
            return False
        self.manifest["files"].append(e)
        log.info("%s/%s: already complete (resumed)", self.rel.folder, rel_path)
        return True

    # ---- mirror ----------------------------------------------------------------------------------------
    def from_mirror(self) -> None:
        base = self.mirror_dir
        if base is None or not base.is_dir():
            raise UserFacingError(
                f"mirror release folder {base} does not exist: the mirror must hold {self.rel.folder}/ "
                "(set data.mirror, --mirror or $ASEARCHER_MIRROR to the directory containing it)"
            )
        plan = (
            self.rel.planned(self.cfg)
            if self.rel.files is not None
            else [
                (p.relative_to(base).as_posix(), None)
                for p in sorted(base.rglob("*"))
                if p.is_file()
                and p.name != MANIFEST
                and not p.name.endswith(".tmp")
                and not any(part.startswith(".") for part in p.relative_to(base).parts)
            ]
        )
        if not plan:
            raise UserFacingError(f"mirror release folder {base} holds no files")
        for rel_path, limit in plan:
            src = base / rel_path
            if not src.is_file():
                raise UserFacingError(f"mirror is missing {src} (release {self.rel.folder} needs {rel_path})")
            if self._reuse(rel_path, limit):
                continue
            with atomic_path(self.release_dir / rel_path, suffix=".tmp") as tmp:
                if limit is not None:
                    with open(src, "rb") as f:
                        stats = copy_first_records(f, tmp, limit, str(src))
                else:
                    link_or_copy(src, tmp)
                    stats = scan_file(tmp, label=str(src))
            self._record(rel_path, stats, limit, f"mirror:{src.resolve()}", source_bytes=src.stat().st_size)

    # ---- hub -------------------------------------------------------------------------------------------
    def from_hub(self) -> None:
        if self.rel.files is None:
            self._hub_snapshot()
            return
        for rel_path, limit in self.rel.planned(self.cfg):
            if self._reuse(rel_path, limit):
                continue
            final = self.release_dir / rel_path
            label = self._hub_label(rel_path)
            if limit is not None:
                # stream only the first `limit` lines; fsspec reads in blocks, so this costs ~limit lines of HTTP
                fs = huggingface_hub.HfFileSystem()
                rev = quote(self.cfg.revision or "main", safe="")
                with (
                    atomic_path(final, suffix=".tmp") as tmp,
                    fs.open(f"datasets/{self.repo}@{rev}/{rel_path}", "rb") as f,
                ):
                    stats = copy_first_records(f, tmp, limit, label)
            else:
                downloaded = Path(
                    huggingface_hub.hf_hub_download(
                        self.repo,
                        rel_path,
                        repo_type="dataset",
                        revision=self.cfg.revision,
                        local_dir=self.staging,
                    )
                )
                stats = scan_file(downloaded, label=label)
                install(downloaded, final)
            self._record(rel_path, stats, limit, label)

    def _hub_snapshot(self) -> None:
        root = Path(
            huggingface_hub.snapshot_download(
                self.repo,
                repo_type="dataset",
                revision=self.cfg.revision,
                local_dir=self.staging,
                allow_patterns=list(self.rel.hub_patterns),
            )
        )
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if not files:
            raise UserFacingError(
                f"hub dataset {self.repo} at {self.cfg.revision or 'main'} has no files "
                f"matching {', '.join(self.rel.hub_patterns)}"
            )
        for p in files:
            rel_path = p.relative_to(root).as_posix()
            stats = scan_file(p, label=self._hub_label(rel_path))
            install(p, self.release_dir / rel_path)
            self._record(rel_path, stats, None, self._hub_label(rel_path))

    def finish(self) -> dict:
        self.manifest["complete"] = True
        self.manifest["completed"] = _now()
        _write_manifest(self.release_dir, self.manifest)
        remove_tree(self.staging)
        return self.manifest


def verify_manifest(release_dir: Path, manifest: dict) -> None:
    """Re-hash every file; a mismatch is an error naming the file."""
    for e in manifest["files"]:
        p = release_dir / e["path"]
        if not p.is_file():
            raise UserFacingError(
                f"{p} is listed in {release_dir / MANIFEST} but missing; re-run with --force"
            )
        digest = sha256_file(p)
        if digest != e["sha256"]:
            raise UserFacingError(
                f"{p}: sha256 {digest[:16]}... differs from the manifest ({e['sha256'][:16]}...); "
                "the file changed after fetching. Re-run with --force."
            )


def fetch_release(
    release: str,
    output: str | Path,
    cfg: DataConfig,
    *,
    mirror: str | Path | None = None,
    force: bool = False,
    verify: bool = False,
) -> tuple[dict, bool]:
    """Fetch one release into output/<folder>/. Returns (manifest, changed); changed=False means it was a no-op."""
    if release not in RELEASES:
        raise UserFacingError(f"unknown release {release!r}; choose one of {', '.join(RELEASES)}")
    rel = RELEASES[release]
    output = Path(output)
    mirror_path = Path(mirror) if mirror else None
    source = resolve_source(cfg, mirror_path)
    if source == "mirror" and mirror_path is None:
        raise UserFacingError(
            "data.source is 'mirror' but no mirror is set: pass --mirror DIR, set data.mirror or "
            "$ASEARCHER_MIRROR, or use --source hub"
        )
    request = _request(rel, cfg, source, mirror_path)
    release_dir = output / rel.folder
    old = _read_manifest(release_dir / MANIFEST)
    same = old is not None and old.get("request") == request and not force
    mirror_rel = (mirror_path / rel.folder) if mirror_path else None
    if same and old.get("complete") and all(_entry_intact(e, release_dir, mirror_rel) for e in old["files"]):
        if verify:
            verify_manifest(release_dir, old)
        log.info("%s is up to date (%s)", release_dir, release_dir / MANIFEST)
        return old, False
    reusable = {e["path"]: e for e in old["files"]} if same else {}
    job = _Fetch(rel, output, cfg, source, mirror_path, request, reusable)
    release_dir.mkdir(parents=True, exist_ok=True)
    if source == "mirror":
        job.from_mirror()
        return job.finish(), True
    try:
        job.from_hub()
    except Exception as e:
        if not _is_hub_failure(e):
            raise
        _remove_empty(release_dir, job.staging)
        raise UserFacingError(_hub_failure_message(e, rel, cfg)) from None
    return job.finish(), True


# ---- the hub cannot be reached -------------------------------------------------------------------------------
_HTTP_MODULES = {"httpx", "httpx2", "httpcore", "h11", "requests", "urllib3", "aiohttp"}


def _is_hub_failure(e: BaseException) -> bool:
    """An error of the hub or the network (not of this machine's disk, nor a corrupt file)."""
    from huggingface_hub import errors as hf

    hub = (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError, hf.EntryNotFoundError)
    if isinstance(e, hub + (ConnectionError, TimeoutError)):
        return True
    return any(c.__module__.split(".")[0] in _HTTP_MODULES for c in type(e).__mro__)


def _hub_failure_message(e: BaseException, rel: Release, cfg: DataConfig) -> str:
    from huggingface_hub import constants
    from huggingface_hub import errors as hf

    repo = getattr(cfg, rel.repo_field)
    where = f"dataset {repo} at revision {cfg.revision or 'main'} on {constants.ENDPOINT}"
    cause = e  # the network error under huggingface_hub's own ("cannot find the requested files ...")
    while (nxt := cause.__cause__ or cause.__context__) is not None and _is_hub_failure(nxt):
        cause = nxt
    detail = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0][:300]}"
    if isinstance(e, hf.OfflineModeIsEnabled) or constants.HF_HUB_OFFLINE:
        why = f"cannot fetch {where}: HF_HUB_OFFLINE is set (unset it to use the network)"
    elif not isinstance(e, hf.LocalEntryNotFoundError) and isinstance(
        e, hf.RepositoryNotFoundError | hf.RevisionNotFoundError | hf.EntryNotFoundError
    ):
        why = f"the hub has no {where} ({detail}); check data.{rel.repo_field} and data.revision"
    elif isinstance(e, hf.HfHubHTTPError) and getattr(e.response, "status_code", 0) in (401, 403):
        why = f"the hub refused access to {where} ({detail}); check your token (HF_TOKEN)"
    else:
        why = f"could not reach the Hugging Face hub for {where} ({detail}); check the network"
    return (
        f"release {rel.key} ({rel.folder}): {why}. To use a local copy instead: --source mirror --mirror DIR "
        f"(or set $ASEARCHER_MIRROR or data.mirror), where DIR holds {rel.folder}/."
    )


def _remove_empty(release_dir: Path, staging: Path) -> None:
    """After a failed hub fetch: drop a release folder left empty, and a staging folder holding no data (only
    huggingface_hub's locks and markers; a partial download, *.incomplete, is kept so a rerun resumes it)."""
    markers = {".gitignore", "CACHEDIR.TAG"}
    if staging.is_dir() and not any(
        p.is_file() and p.name not in markers and p.suffix != ".lock" for p in staging.rglob("*")
    ):
        remove_tree(staging)
    if release_dir.is_dir() and not any(release_dir.iterdir()):
        release_dir.rmdir()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides).data
    updates: dict[str, Any] = {}
    if args.source:
        updates["source"] = args.source
    if args.mirror:
        updates["mirror"] = args.mirror
    if args.revision:
        updates["revision"] = args.revision
    for name in ("corpus_limit", "pages_limit"):
        if hasattr(args, name):
            updates[name] = getattr(args, name)
    cfg = DataConfig.model_validate(cfg.model_dump() | updates)
    mirror = cfg.mirror or os.environ.get("ASEARCHER_MIRROR") or None
    manifest, changed = fetch_release(
        args.release, args.output, cfg, mirror=mirror, force=args.force, verify=args.verify
    )
    where = Path(args.output) / manifest["release"]
    n = len(manifest["files"])
    total = sum(e["bytes"] for e in manifest["files"])
    state = "fetched" if changed else "up to date"
    print(
        f"{where}: {state} ({n} files, {total:,} bytes, source {manifest['source']}); manifest {where / MANIFEST}"
    )
    return 0
