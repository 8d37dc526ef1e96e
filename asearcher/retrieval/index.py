"""Build a retrieval index over wiki_corpus.jsonl ({"id", "contents", "url"} per line).

--backend bm25 (default): Pyserini/Anserini's own Lucene indexer (JsonCollection, multi-threaded) with the raw
rows stored, so the server returns every field (url included) straight from the index.
--backend e5: E5-style dense embeddings in a FAISS flat inner-product index (GPU if available).

The corpus is validated first (a malformed or truncated line is reported as FILE:LINE). The index is built in
a temporary directory next to --output and moved into place only when complete; index_meta.json records the
doc count, corpus size/sha256, backend, parameters and build time. Re-running with the same corpus and
parameters is a no-op; a crashed dense build resumes at its last saved shard.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from asearcher.config import RetrievalConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.utils.atomic import replace_dir
from asearcher.utils.jsonl import DataError, iter_jsonl, write_json

log = logging.getLogger(__name__)

META_FILE = "index_meta.json"
REQUEST_FILE = "build_request.json"  # in the work dir: what it is a build of (a resume must be of the same)
LUCENE_DIR = "lucene"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus", required=True, help="wiki_corpus.jsonl: one {'id','contents','url'} object per line"
    )
    p.add_argument("--output", required=True, help="index directory to create")
    p.add_argument(
        "--backend", choices=["bm25", "e5"], help="bm25 (Lucene) or e5 (dense FAISS); default from config"
    )
    p.add_argument("--threads", type=int, help="indexing threads (default: retrieval.threads)")
    p.add_argument("--model", help="dense encoder (hub id or local dir); overrides retrieval.dense.model")
    p.add_argument("--device", help="dense encoding device (default: cuda if available, else cpu)")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date index exists")


def corpus_fingerprint(corpus: Path) -> dict[str, Any]:
    with open(corpus, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": str(corpus.resolve()), "bytes": corpus.stat().st_size, "sha256": digest}


def validate_corpus(corpus: Path) -> int:
    """Check every line (JSON object, string id and contents, unique ids); return the number of rows."""
    if not corpus.is_file():
        raise DataError(f"corpus {corpus} does not exist (pass --corpus path/to/wiki_corpus.jsonl)")
    from asearcher.utils.progress import progress as progress_bar

    n = 0
    id_hashes = np.zeros(1 << 16, dtype=np.int64)
    bar = progress_bar(
        desc=f"validating {corpus.name}", unit="row", disable=corpus.stat().st_size < (256 << 20)
    )
    for n, row in enumerate(iter_jsonl(corpus, require=("id", "contents")), start=1):
        if not isinstance(row["id"], str) or not row["id"]:
            raise DataError(f"{corpus}: row {n}: field 'id' must be a non-empty string, got {row['id']!r}")
        if not isinstance(row["contents"], str):
            raise DataError(f"{corpus}: row {n}: field 'contents' must be a string")
        if "url" in row and not isinstance(row["url"], str):
            raise DataError(f"{corpus}: row {n}: field 'url' must be a string")
        if n > len(id_hashes):
            id_hashes = np.resize(id_hashes, 2 * len(id_hashes))
        id_hashes[n - 1] = int.from_bytes(
            hashlib.blake2b(row["id"].encode(), digest_size=8).digest(), "little", signed=True
        )
        bar.update()
    bar.close()
    if n == 0:
        raise DataError(f"corpus {corpus} has no rows")
    h = np.sort(id_hashes[:n])
    if (h[1:] == h[:-1]).any():
        _report_duplicate(corpus)
    return n


def _report_duplicate(corpus: Path) -> None:
    seen: dict[str, int] = {}
    with open(corpus, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if raw.strip():
                import json

                doc_id = json.loads(raw)["id"]
                if doc_id in seen:
                    raise DataError(
                        f"{corpus}:{lineno}: duplicate id {doc_id!r} (first at line {seen[doc_id]})"
                    )
                seen[doc_id] = lineno


def read_meta(index_dir: str | Path) -> dict[str, Any]:
    import json

    path = Path(index_dir) / META_FILE
    if not path.exists():
        raise UserFacingError(
            f"{index_dir} is not an index built by `asearcher index` (no {META_FILE}); build it with "
            "`asearcher index --corpus wiki_corpus.jsonl --output DIR`"
        )
    return json.loads(path.read_text())


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _lucene_args(input_dir: Path, index_dir: Path, threads: int, memory_buffer_mb: int = 4096) -> list[str]:
    return [
        "-collection", "JsonCollection",
        "-input", str(input_dir),
        "-index", str(index_dir),
        "-generator", "DefaultLuceneDocumentGenerator",
        "-threads", str(threads),
        "-storeRaw",
        "-memoryBuffer", str(memory_buffer_mb),
    ]  # fmt: skip


def run_lucene_indexer(input_dir: Path, index_dir: Path, threads: int, max_heap: str | None = None) -> None:
    """Run Anserini's IndexCollection (what `python -m pyserini.index.lucene` runs) in this process."""
    from .java import configure_java, heap_bytes

    configure_java(max_heap)
    # Anserini buffers 4 GB of documents by default: under a smaller -Xmx that would run out of heap.
    buffer_mb = min(4096, max(64, heap_bytes(max_heap) >> 21)) if max_heap else 4096
    import pyserini.pyclass  # noqa: F401  (puts the Anserini jar on the classpath)
    from jnius import autoclass

    autoclass("io.anserini.index.IndexCollection").main(
        _lucene_args(input_dir, index_dir, threads, buffer_mb)
    )


def lucene_doc_count(index_dir: Path) -> int:
    from .java import configure_java

    configure_java()
    from pyserini.pyclass import autoclass

    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(index_dir))
    try:
        return int(searcher.get_total_num_docs())
    finally:
        searcher.close()


def _result_params(params: dict[str, Any]) -> dict[str, Any]:
    """The settings that change the index's content (not how fast it is built): a change means a rebuild."""
    return {k: v for k, v in params.items() if k not in ("threads", "batch_size")}


def build_index(
    corpus: str | Path,
    output: str | Path,
    cfg: RetrievalConfig | None = None,
    *,
    backend: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Validate `corpus` and build the index at `output`; return the metadata written to index_meta.json."""
    cfg = cfg or RetrievalConfig()
    corpus, output = Path(corpus), Path(output)
    backend = backend or cfg.backend
    threads = threads or cfg.threads
    if threads < 1:
        raise UserFacingError(f"--threads must be >= 1, got {threads}")
    params: dict[str, Any] = {"threads": threads}
    if backend == "bm25":
        params.update(k1=cfg.bm25_k1, b=cfg.bm25_b, store_raw=True)
    else:
        params.update(cfg.dense.model_dump())

    t0 = time.time()
    n_rows = validate_corpus(corpus)
    fingerprint = corpus_fingerprint(corpus)
    if output.exists() and not force:
        if (output / META_FILE).exists():
            old = read_meta(output)
            same = (
                old.get("corpus", {}).get("sha256") == fingerprint["sha256"]
                and old.get("backend") == backend
                and _result_params(old.get("params", {})) == _result_params(params)
            )
            if same:
                log.info(
                    "index %s is up to date (same corpus, backend and settings); use --force to rebuild",
                    output,
                )
                return old
        raise UserFacingError(
            f"--output {output} already exists and is not an up-to-date index of {corpus}; "
            "pass --force to replace it or choose another directory"
        )

    work = output.with_name(output.name + ".building")
    request = {
        "backend": backend,
        "corpus": fingerprint,
        "params": {k: v for k, v in params.items() if k != "threads"},
    }
    if work.exists() and (backend == "bm25" or _read_json(work / REQUEST_FILE) != request):
        shutil.rmtree(work)  # a Lucene build cannot resume; a dense one resumes only the same build
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / REQUEST_FILE, request)
    extra: dict[str, Any] = {}
    if backend == "bm25":
        # JsonCollection reads a directory: link the corpus into one instead of copying 23 GB.
        input_dir = work / "input"
        input_dir.mkdir()
        (input_dir / "corpus.jsonl").symlink_to(corpus.resolve())
        t_idx = time.time()
        run_lucene_indexer(input_dir, work / LUCENE_DIR, threads, cfg.jvm_max_heap)
        extra["indexer_seconds"] = round(time.time() - t_idx, 3)
        shutil.rmtree(input_dir)
        n_docs = lucene_doc_count(work / LUCENE_DIR)
        if n_docs != n_rows:
            raise UserFacingError(
                f"Lucene indexed {n_docs} documents but {corpus} has {n_rows} rows; see the indexer log above"
            )
    elif backend == "e5":
        from .dense import build_dense_index

        extra.update(build_dense_index(corpus, work, cfg.dense, n_rows, device))
        n_docs = n_rows
    else:
        raise UserFacingError(f"unknown backend {backend!r} (use bm25 or e5)")

    meta = {
        "format": 1,
        "backend": backend,
        "doc_count": n_docs,
        "corpus": fingerprint,
        "params": params,
        "build_seconds": round(time.time() - t0, 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    (work / REQUEST_FILE).unlink()
    write_json(work / META_FILE, meta)
    replace_dir(work, output)
    log.info("built %s index of %d docs at %s in %.1fs", backend, n_docs, output, meta["build_seconds"])
    return meta


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides).retrieval
    if args.model:
        cfg.dense.model = args.model
    meta = build_index(
        args.corpus,
        args.output,
        cfg,
        backend=args.backend,
        threads=args.threads,
        device=args.device,
        force=args.force,
    )
    print(f"{meta['backend']} index: {meta['doc_count']} docs -> {args.output} ({meta['build_seconds']}s)")
    return 0
