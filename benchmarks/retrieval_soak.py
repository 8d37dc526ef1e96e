"""Retrieval soak: agent-like light clients alone, then beside heavy clients that send the largest legal requests.

Light clients send one query per request (what agents do) over keep-alive connections; heavy clients send
requests at the cost budget (retrieval.server.max_request_cost), alternating two shapes: 100-term queries at the
largest topk, and as many short queries as the request may hold. Each load generator is its own process, apart
from the server (a subprocess too). Prints the light clients' p50/p99 in both phases and their ratio, the heavy
requests served, and the server's memory (VmRSS) at start and end.

  python benchmarks/retrieval_soak.py [--index DIR] [--mirror DIR] [--seconds 20]

Target (mirror corpus, 2 cores): light p99 with heavy clients under 2x light p99 alone; no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.retrieval_throughput import load_queries, mirror_dir  # noqa: E402


def heavy_bodies(queries: list[str], cfg) -> list[dict]:
    """Two request shapes at the cost budget: long queries at max_topk, and max_queries_per_request short ones."""
    scfg = cfg.server
    words = [w for q in queries for w in re.findall(r"[a-z]{4,}", q.lower())]
    rnd = random.Random(0)
    long_q = [" ".join(rnd.choice(words) for _ in range(100)) for _ in range(1024)]
    n_long = min(scfg.max_queries_per_request, scfg.max_request_cost // (100 * scfg.max_topk))
    bodies = [{"queries": long_q[:n_long], "topk": scfg.max_topk}]
    short = [q for q in queries if len(q.split()) <= 9][: scfg.max_queries_per_request]
    n_short = min(len(short), scfg.max_request_cost // (9 * scfg.max_topk))
    bodies.append({"queries": short[:n_short], "topk": scfg.max_topk})
    return bodies


def _load_gen(url: str, bodies: list[dict], concurrency: int, seconds: float, out: mp.Queue) -> None:
    import aiohttp

    async def main() -> None:
        lat: list[float] = []
        errors: list[str] = []
        stop_at = time.perf_counter() + seconds
        conn = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

            async def worker(wid: int) -> None:
                i = wid
                while time.perf_counter() < stop_at:
                    body = bodies[i % len(bodies)]
                    i += concurrency
                    t0 = time.perf_counter()
                    async with session.post(url + "/retrieve", json=body) as r:
                        data = await r.read()
                        if r.status != 200 or not data.startswith(b'{"result"'):
                            errors.append(f"{r.status}: {data[:200]!r}")
                    lat.append(time.perf_counter() - t0)

            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        out.put({"lat": lat, "errors": errors})

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


def start_load(url: str, bodies: list[dict], concurrency: int, seconds: float):
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_load_gen, args=(url, bodies, concurrency, seconds, q))
    p.start()
    return p, q


def finish_load(p, q) -> dict:
    res = q.get()
    p.join()
    lat = np.asarray(res["lat"]) * 1000
    return {
        "n": len(lat),
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "errors": res["errors"],
    }


def vm(pid: int, key: str) -> int:
    """VmRSS / VmHWM of a process, in MB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) >> 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--index", help="existing index dir (default: build the mirror's BM25 index in a temp dir)"
    )
    ap.add_argument("--mirror")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of each phase")
    ap.add_argument("--light-clients", type=int, default=8)
    ap.add_argument("--heavy-clients", type=int, default=2)
    ap.add_argument("--topk", type=int, default=5, help="topk of the light clients")
    args = ap.parse_args()

    from asearcher.config import RetrievalConfig
    from asearcher.retrieval.index import build_index
    from asearcher.retrieval.service import running_server

    mirror = mirror_dir(args.mirror)
    queries = load_queries(mirror)
    cfg = RetrievalConfig()
    light = [{"queries": [q], "topk": args.topk} for q in queries]
    heavy = heavy_bodies(queries, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        index = args.index
        if index is None:
            index = str(Path(tmp) / "bm25")
            build_index(mirror / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl", index, cfg)
        with running_server(index, retrieval=cfg) as srv:
            pid = srv.process.pid
            rss_start = vm(pid, "VmRSS")
            finish_load(*start_load(srv.url, light, args.light_clients, 3.0))  # warm-up (JIT, connections)
            alone = finish_load(*start_load(srv.url, light, args.light_clients, args.seconds))
            heavy_run = start_load(srv.url, heavy, args.heavy_clients, args.seconds)
            time.sleep(1.0)  # the heavy requests are in the server before the light clients measure
            mixed = finish_load(*start_load(srv.url, light, args.light_clients, args.seconds))
            heavy_res = finish_load(*heavy_run)
            stats = srv.client().health()["stats"]
            rss_end, rss_peak = vm(pid, "VmRSS"), vm(pid, "VmHWM")

    print(
        f"\n{os.cpu_count()} CPUs, {args.seconds:.0f}s per phase, {args.light_clients} light clients "
        f"(1 query, topk {args.topk}), {args.heavy_clients} heavy clients"
    )
    print(
        "heavy requests: "
        + ", ".join(f"{len(b['queries'])} queries x topk {b['topk']}" for b in heavy)
        + f" (budget {cfg.server.max_request_cost:,})"
    )
    print(f"{'light clients':<22} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, r in (("alone", alone), ("with heavy clients", mixed)):
        print(
            f"{name:<22} {r['n']:>9} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {len(r['errors']):>7}"
        )
    print(f"light p99 ratio (with heavy / alone): {mixed['p99_ms'] / alone['p99_ms']:.2f}x (target < 2x)")
    print(
        f"heavy requests served: {heavy_res['n']} (p50 {heavy_res['p50_ms'] / 1000:.1f}s, "
        f"max {heavy_res['max_ms'] / 1000:.1f}s), errors {len(heavy_res['errors'])}"
    )
    print(
        f"server bulk lane: {stats['bulk']['requests']} requests in {stats['bulk']['chunks']} chunks; "
        f"dropped {stats['dropped']}"
    )
    print(f"server memory: VmRSS {rss_start} MB at start, {rss_end} MB at end (peak {rss_peak} MB)")
    for r in (alone, mixed, heavy_res):
        for e in r["errors"][:3]:
            print("error:", e)


if __name__ == "__main__":
    main()
