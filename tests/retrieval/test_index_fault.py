"""`asearcher index` killed (SIGKILL) at a random point of the build, then rerun: the result equals an
uninterrupted build (same documents, same search results). BM25 restarts its Lucene build; the dense (E5)
build resumes at its last saved shard, so its crash windows are also tested one by one.

Kill points come from a seeded RNG; the seed is in every assertion message (ASEARCHER_FAULT_SEED=N replays one).
Pyserini's JVM never starts in the test worker: builds run in subprocesses, searches in OutOfProcessSearcher.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asearcher.config import RetrievalConfig
from tests.fixtures.faults import fault_seed, kill_when
from tests.fixtures.retrieval import OutOfProcessSearcher, run_cli
from tests.retrieval import test_dense

# the tiny dense setup of test_dense.py (a random-init encoder, 300 passages), as fixtures of this module too
tiny_encoder, small_corpus = test_dense.tiny_encoder, test_dense.small_corpus

QUERIES = [
    "City Bank of New York founded 1812",
    "Uranus planet discovered Herschel",
    "capital of France",
    "first president of the bank",
]


def _timed_build(cmd: list[str], work: Path, env: dict | None = None) -> float:
    """Run a build to the end; seconds from its work directory appearing (the build proper) to its exit."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while not work.exists() and proc.poll() is None:
        time.sleep(0.01)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]
    return time.monotonic() - t0


def _kill_during_build(cmd: list[str], work: Path, delay: float, started: Path | None = None) -> str:
    """Start a build, SIGKILL it `delay` seconds after `started` (default: its work directory) appears; say
    where it was."""
    log = work.with_name(work.name + ".killed.log")  # not a pipe: a chatty child would block on a full one
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    finished = kill_when(proc, (started or work).exists, delay)
    log.unlink()
    state = (
        "had already finished"
        if finished
        else "killed"
        if work.exists()
        else "killed once its build was done"
    )
    left = sorted(p.name for p in work.rglob("*"))[:12] if work.exists() else "no work dir"
    return f"{state} {delay:.2f}s after {(started or work).name} appeared; work dir then: {left}"


@pytest.mark.java
def test_bm25_build_killed_at_a_random_time_then_rerun(tmp_path: Path, corpus_file: Path):
    from asearcher.errors import UserFacingError
    from asearcher.retrieval.java import find_java

    try:
        find_java()
    except UserFacingError as e:
        pytest.skip(f"no Java >= 21 for Pyserini: {e}")
    corpus = tmp_path / "corpus.jsonl"
    with corpus_file.open() as f:
        corpus.write_text("".join(line for _, line in zip(range(8000), f, strict=False)))
    ref, out = tmp_path / "ref", tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "asearcher.cli",
        "--no-progress",
        "index",
        "--corpus",
        str(corpus),
        "--output",
    ]
    build_s = _timed_build([*cmd, str(ref)], ref.with_name("ref.building"))

    seed = fault_seed()
    delay = random.Random(seed).uniform(0, build_s)
    where = _kill_during_build([*cmd, str(out)], out.with_name("run.building"), delay)
    msg = f"seed {seed}: {where}"
    print(msg)  # where the kill landed (shown with -rP)
    r = run_cli("index", "--corpus", str(corpus), "--output", str(out))
    assert r.returncode == 0, f"{msg}\n{r.stderr[-3000:]}"

    metas = [json.loads((d / "index_meta.json").read_text()) for d in (ref, out)]
    assert metas[0]["doc_count"] == metas[1]["doc_count"] == 8000, msg
    assert metas[0]["corpus"] == metas[1]["corpus"], msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "ref", "run"], msg  # no leftovers
    hits = []
    for d in (ref, out):
        s = OutOfProcessSearcher(d)
        try:
            hits.append(s.batch_search_scored(QUERIES, 10))
        finally:
            s.close()
    for q, a, b in zip(QUERIES, *hits, strict=True):
        assert [(d["id"], round(sc, 4)) for d, sc in a] == [(d["id"], round(sc, 4)) for d, sc in b], (
            f"{msg}: {q}"
        )


# ---- dense (E5): resumable per shard ----------------------------------------------------------------------------
SHARD_ROWS = 30  # 300 passages -> 10 shards (the real size is 100k)


def _dense_cfg(model: Path) -> RetrievalConfig:
    return RetrievalConfig(
        backend="e5", threads=1, dense={"model": str(model), "max_length": 64, "batch_size": 32}
    )


def _dense_rows(index: Path) -> tuple[int, list[list[str]], np.ndarray]:
    """(vectors in the index, top-5 ids of a few queries, every embedding) of a built dense index."""
    import faiss

    from asearcher.retrieval.searcher import DenseSearcher

    s = DenseSearcher(
        index, RetrievalConfig(backend="e5", threads=1), device="cpu"
    )  # settings: index_meta.json
    ids = [[d["id"] for d in hits] for hits in s.batch_search(QUERIES, 5)]
    fi = faiss.read_index(str(index / "faiss.index"))
    return fi.ntotal, ids, fi.reconstruct_n(0, fi.ntotal)


def _assert_same_index(ref: Path, out: Path, msg: str) -> None:
    n_ref, ids_ref, emb_ref = _dense_rows(ref)
    n_out, ids_out, emb_out = _dense_rows(out)
    assert n_out == n_ref == 300, f"{msg}: {n_out} vectors after the rerun, {n_ref} uninterrupted"
    assert np.allclose(emb_out, emb_ref, atol=1e-5), f"{msg}: embeddings differ (a passage lost or repeated)"
    assert ids_out == ids_ref, msg
    offsets = [np.load(d / "doc_offsets.npy").tolist() for d in (ref, out)]
    assert offsets[0] == offsets[1], msg
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir()), msg
    assert not out.with_name(out.name + ".building").exists(), msg


_DENSE_CHILD = (
    "import sys, time\n"
    "import asearcher.retrieval.dense as d\n"
    f"d.EMB_SHARD_ROWS = {SHARD_ROWS}\n"
    "enc = d.E5Encoder.encode\n"
    "d.E5Encoder.encode = lambda self, *a, **k: (time.sleep(0.1), enc(self, *a, **k))[1]  # a longer build\n"
    "from asearcher.cli import main\n"
    "sys.exit(main())\n"
)


def test_dense_build_killed_at_a_random_time_then_rerun(
    tmp_path, tiny_encoder, small_corpus, monkeypatch, caplog
):
    """The killed build runs in a subprocess whose encoding is slowed down (10 shards, ~2 s); the reference
    build and the rerun run here (no JVM on this path)."""
    import asearcher.retrieval.dense as dense
    from asearcher.retrieval.index import build_index

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"retrieval:\n  backend: e5\n  threads: 1\n  dense: {{model: {tiny_encoder}, max_length: 64, batch_size: 32}}\n"
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", _DENSE_CHILD, "--no-progress", "index", "--config", str(cfg_file)]
    cmd += ["--corpus", str(small_corpus), "--device", "cpu", "--output", str(out)]
    seed = fault_seed()
    delay = random.Random(seed).uniform(0, 3.0)  # 10 shards of >= 0.1 s each, then the index
    work = out.with_name("run.building")
    msg = f"seed {seed}: " + _kill_during_build(cmd, work, delay, started=work / "emb_shards")
    print(msg)  # where the kill landed (shown with -rP)
    saved = len(list((work / "emb_shards").glob("shard_*.npz"))) if (work / "emb_shards").is_dir() else 0

    monkeypatch.setattr(dense, "EMB_SHARD_ROWS", SHARD_ROWS)
    caplog.set_level("INFO", logger="asearcher.retrieval.dense")
    build_index(small_corpus, out, _dense_cfg(tiny_encoder), device="cpu")
    if saved and not (work / "doc_offsets.npy").exists():  # the rerun went on from the saved shards
        assert f"resuming dense build at row {saved * SHARD_ROWS} ({saved} shards done)" in caplog.text, msg
    build_index(small_corpus, tmp_path / "ref", _dense_cfg(tiny_encoder), device="cpu")
    _assert_same_index(tmp_path / "ref", out, msg)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("window", ["while-saving-a-shard", "while-deleting-shards"])
def test_dense_build_crash_windows_then_rerun(tmp_path, tiny_encoder, small_corpus, monkeypatch, window):
    """The two windows a random kill rarely hits: the process dies while a shard file is half written (its temp
    file stays), or after the index is written while the shard files are being deleted."""
    import asearcher.retrieval.dense as dense
    from asearcher.retrieval.index import build_index

    monkeypatch.setattr(dense, "EMB_SHARD_ROWS", SHARD_ROWS)
    cfg = _dense_cfg(tiny_encoder)
    build_index(small_corpus, tmp_path / "ref", cfg, device="cpu")
    out = tmp_path / "run"
    work = out.with_name("run.building")
    with monkeypatch.context() as m:
        if window == "while-saving-a-shard":
            real_savez, calls = np.savez, []

            def savez(path, **arrays):
                calls.append(path)
                if len(calls) == 4:  # killed mid-write: its temp file (.tmp-PID-shard_...) stays behind
                    _, _, name = Path(path).name.split("-", 2)
                    Path(path).with_name(f".tmp-1-{name}").write_bytes(b"PK\x03\x04 half a zip")
                    raise _Crash
                real_savez(path, **arrays)

            m.setattr(dense.np, "savez", savez)
        else:
            real_unlink, deleted = os.unlink, []

            def unlink(path, *a, **k):  # Path.unlink and shutil.rmtree both delete through os.unlink
                if os.path.basename(path).startswith("shard_"):
                    if len(deleted) == 3:
                        raise _Crash
                    deleted.append(path)
                real_unlink(path, *a, **k)

            m.setattr(os, "unlink", unlink)
        with pytest.raises(_Crash):
            build_index(small_corpus, out, cfg, device="cpu")
    assert work.is_dir() and not out.exists()
    build_index(small_corpus, out, cfg, device="cpu")
    _assert_same_index(tmp_path / "ref", out, window)


def test_dense_work_of_another_build_is_not_resumed(tmp_path, tiny_encoder, small_corpus, monkeypatch):
    """A build interrupted for one corpus, then a build of another corpus to the same output: the saved shards
    are of the first corpus and must not end up in the second index."""
    import asearcher.retrieval.dense as dense
    from asearcher.retrieval.index import build_index

    monkeypatch.setattr(dense, "EMB_SHARD_ROWS", SHARD_ROWS)
    cfg = _dense_cfg(tiny_encoder)
    other = tmp_path / "other.jsonl"
    lines = small_corpus.read_text().splitlines(keepends=True)
    other.write_text("".join(reversed(lines)))  # the same passages in another order
    real_savez, calls = np.savez, []

    def savez(path, **arrays):
        calls.append(path)
        if len(calls) == 4:
            raise _Crash
        real_savez(path, **arrays)

    with monkeypatch.context() as m:
        m.setattr(dense.np, "savez", savez)
        with pytest.raises(_Crash):
            build_index(other, tmp_path / "run", cfg, device="cpu")
    build_index(small_corpus, tmp_path / "run", cfg, device="cpu")
    build_index(small_corpus, tmp_path / "ref", cfg, device="cpu")
    _assert_same_index(tmp_path / "ref", tmp_path / "run", "after a build of another corpus")
