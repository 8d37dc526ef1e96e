"""Retrieval throughput: the HTTP server at 1/16/64 concurrent clients vs in-process batch_search.

Same index, same queries, one run, side by side. Each client sends one query per request (what agents do),
over keep-alive connections (aiohttp), from a separate load-generator process so client CPU does not run in the
server's interpreter. Prints queries/s, p50/p99 latency and the ratio server/in-process.

  python benchmarks/retrieval_throughput.py [--index DIR] [--mirror DIR] [--seconds 10]

Target (mirror corpus, 2 cores): server at 64 clients >= 0.8x in-process batched throughput, p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mirror_dir(arg: str | None) -> Path:
    m = arg or os.environ.get("ASEARCHER_MIRROR") or "ASEARCHER_MIRROR-not-set"
    if not Path(m).exists():
        sys.exit(f"no mirror at {m}: pass --mirror or set ASEARCHER_MIRROR")
    return Path(m)


def load_queries(mirror: Path) -> list[str]:
    qs = []
    for name in ("HotpotQA_rand1000", "NQ_rand1000", "TriviaQA_rand1000", "PopQA_rand1000"):
        p = mirror / "ASearcher-test-data" / name / "test.jsonl"
        if p.exists():
            qs += [json.loads(line)["question"] for line in p.open() if line.strip()]
    return qs


def _load_gen(
    url: str, queries: list[str], concurrency: int, seconds: float, topk: int, out: mp.Queue
) -> None:
    import aiohttp

    async def main() -> None:
        lat: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + seconds
        conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as session:

            async def worker(wid: int) -> None:
                nonlocal errors
                i = wid
                while time.perf_counter() < stop_at:
                    q = queries[i % len(queries)]
                    i += concurrency
                    t0 = time.perf_counter()
                    async with session.post(url + "/retrieve", json={"queries": [q], "topk": topk}) as r:
                        body = await r.read()
                        if r.status != 200 or not body.startswith(b'{"result"'):
                            errors += 1
                    lat.append(time.perf_counter() - t0)

            t_start = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            elapsed = time.perf_counter() - t_start
        out.put({"n": len(lat), "elapsed": elapsed, "lat": lat, "errors": errors})

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


def measure_server(url: str, queries: list[str], concurrency: int, seconds: float, topk: int) -> dict:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_load_gen, args=(url, queries, concurrency, seconds, topk, q))
    p.start()
    res = q.get()
    p.join()
    lat = np.asarray(res["lat"]) * 1000
    return {
        "qps": res["n"] / res["elapsed"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": res["errors"],
        "n": res["n"],
    }


def measure_inprocess(searcher, queries: list[str], seconds: float, topk: int, batch: int) -> dict:
    n, t0 = 0, time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        chunk = [queries[(i + j) % len(queries)] for j in range(batch)]
        i += batch
        searcher.batch_search(chunk, topk)
        n += len(chunk)
    return {"qps": n / (time.perf_counter() - t0), "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--index", help="existing index dir (default: build the mirror's BM25 index in a temp dir)"
    )
    ap.add_argument("--mirror")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--clients", default="1,16,64")
    args = ap.parse_args()

    from asearcher.config import RetrievalConfig
    from asearcher.retrieval.index import build_index
    from asearcher.retrieval.searcher import open_searcher
    from asearcher.retrieval.service import running_server

    mirror = mirror_dir(args.mirror)
    queries = load_queries(mirror)
    cfg = RetrievalConfig()
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            index = str(Path(tmp) / "bm25")
            build_index(mirror / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl", index, cfg)
        searcher = open_searcher(index, cfg)
        measure_inprocess(searcher, queries, 3.0, args.topk, cfg.server.max_batch)  # JIT warm-up
        inproc = measure_inprocess(searcher, queries, args.seconds, args.topk, cfg.server.max_batch)
        searcher.close()
        rows = []
        with running_server(index, retrieval=cfg) as srv:
            measure_server(srv.url, queries, 64, 3.0, args.topk)  # warm-up (JIT, connections)
            for c in (int(x) for x in args.clients.split(",")):
                rows.append((c, measure_server(srv.url, queries, c, args.seconds, args.topk)))
            stats = srv.client().health()["stats"]
    print(
        f"\nqueries: {len(queries)} distinct, topk={args.topk}, {os.cpu_count()} CPUs, {args.seconds:.0f}s per point"
    )
    print(f"in-process batch_search (batch {cfg.server.max_batch}): {inproc['qps']:.0f} q/s")
    print(f"{'clients':>8} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ratio':>7}")
    for c, r in rows:
        print(
            f"{c:>8} {r['qps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7} {r['qps'] / inproc['qps']:>7.2f}"
        )
    print(
        f"server batching: mean batch {stats['mean_batch_size']}, max {stats['max_batch_size']}, {stats['batches']} batches"
    )


if __name__ == "__main__":
    main()
