"""QA synthesis throughput: seeds finished per second with 1 and with 64 seeds in flight, measured side by side.

REAL: the synthesis agent loop (actions, injection over the page link graph, verification with n no-tool answers,
the judge, uniqueness checks), the roles and their concurrency limits, reply parsing, durable per-seed appends,
the statistics and the training file, over the mirror's pages (links derived from the page text).
SIMULATED: both models. A scripted engine (asearcher.synth.scripted, named SIMULATED in the output) answers every
prompt with a well-formed reply after sleeping --latency-ms per call, standing in for a served 32B model whose
calls take seconds. This measures how well the harness overlaps model calls, not decoding.

  python benchmarks/synth_concurrency.py                 # ~30 s on 2 CPU cores
  python benchmarks/synth_concurrency.py --latency-ms 500 --in-flight 128

Target: seeds/s at 64 in flight >= 20x seeds/s at 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asearcher.config import load_config  # noqa: E402
from asearcher.synth.run import synthesize  # noqa: E402
from asearcher.synth.scripted import ScriptedEngine  # noqa: E402
from asearcher.utils.progress import disable_progress  # noqa: E402


def mirror_pages(arg: str | None) -> Path:
    m = Path(arg or os.environ.get("ASEARCHER_MIRROR") or "ASEARCHER_MIRROR-not-set")
    pages = m / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl"
    if not pages.is_file():
        sys.exit(f"no pages at {pages}: pass --mirror or set ASEARCHER_MIRROR")
    return pages


def measure(pages: Path, in_flight: int, seeds: int, latency_s: float, args: argparse.Namespace) -> dict:
    overrides = [
        "synth.seeds=pages", f"synth.num_seeds={seeds}", f"synth.max_in_flight={in_flight}",
        f"synth.max_turns={args.max_turns}", f"synth.n_direct={args.n_direct}",
        f"synth.reasoner_concurrency={max(64, in_flight * 2)}", f"synth.instruct_concurrency={max(64, in_flight * 2)}",
    ]  # fmt: skip
    cfg = load_config(None, overrides)
    engine = ScriptedEngine(latency_s=latency_s)
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as out:
        t0 = time.perf_counter()
        stats = asyncio.run(synthesize(cfg, out, pages, reasoner_engine=engine, instruct_engine=engine))
        wall = time.perf_counter() - t0
    calls = sum(engine.calls.values())
    return {
        "in_flight": in_flight,
        "seeds": stats["seeds"]["finished"],
        "wall_s": wall,
        "seeds_per_s": stats["seeds"]["finished"] / wall,
        "calls": calls,
        "calls_per_seed": calls / max(1, stats["seeds"]["finished"]),
        "selected": stats["yield"]["selected"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mirror", help="release mirror (default: $ASEARCHER_MIRROR)")
    p.add_argument("--latency-ms", type=float, default=100.0, help="simulated per-call model latency")
    p.add_argument("--in-flight", type=int, default=64, help="seeds in flight in the concurrent run")
    p.add_argument("--serial-seeds", type=int, default=3, help="seeds of the 1-in-flight run")
    p.add_argument("--seeds", type=int, default=128, help="seeds of the concurrent run")
    p.add_argument("--max-turns", type=int, default=4)
    p.add_argument("--n-direct", type=int, default=4)
    args = p.parse_args()
    disable_progress()
    pages = mirror_pages(args.mirror)
    lat = args.latency_ms / 1000
    print(
        f"engine: SIMULATED (scripted replies, {args.latency_ms:.0f} ms per call); agent loop, pages, stats: real"
    )
    serial = measure(pages, 1, args.serial_seeds, lat, args)
    conc = measure(pages, args.in_flight, args.seeds, lat, args)
    print(f"{'in flight':>10} {'seeds':>6} {'wall s':>8} {'seeds/s':>9} {'calls/seed':>11} {'selected':>9}")
    for r in (serial, conc):
        print(
            f"{r['in_flight']:>10} {r['seeds']:>6} {r['wall_s']:>8.2f} {r['seeds_per_s']:>9.3f} "
            f"{r['calls_per_seed']:>11.1f} {r['selected']:>9}"
        )
    ratio = conc["seeds_per_s"] / serial["seeds_per_s"]
    print(f"speed-up {args.in_flight} vs 1 in flight: {ratio:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
