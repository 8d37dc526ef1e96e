"""TransformersEngine throughput: N requests one by one vs all concurrent (batched decoding), side by side.

REAL: the tiny model built from the mirror corpus (configs' default sizes unless overridden), the batched
worker with its KV cache, per-request seeded sampling. Prints tokens/s for both modes and their ratio, plus the
time one interruptible weight update adds to a running batch.

  python benchmarks/llm_batching.py                      # ~1 min on 2 CPU cores
  python benchmarks/llm_batching.py --requests 64 --new-tokens 64 --hidden-size 256
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

from asearcher.config import TinyModelConfig  # noqa: E402
from asearcher.llm.engine import GenerationRequest, SamplingParams  # noqa: E402
from asearcher.llm.tiny import build_tiny_model  # noqa: E402
from asearcher.llm.transformers_engine import TransformersEngine  # noqa: E402


def corpus_path() -> Path:
    mirror = Path(os.environ.get("ASEARCHER_MIRROR", "ASEARCHER_MIRROR-not-set"))
    path = mirror / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"
    if not path.exists():
        sys.exit(f"no corpus at {path}: set ASEARCHER_MIRROR to the release mirror")
    return path


async def bench(engine: TransformersEngine, reqs: list[GenerationRequest]) -> dict[str, float]:
    t0 = time.perf_counter()
    seq = [await engine.agenerate(r) for r in reqs]
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    par = await asyncio.gather(*(engine.agenerate(r) for r in reqs))
    t_par = time.perf_counter() - t0
    assert [r.output_ids for r in seq] == [r.output_ids for r in par], (
        "batched results differ from sequential"
    )
    n_tok = sum(len(r.output_ids) for r in seq)

    # a weight update in the middle of the concurrent batch (same weights: only the cost is measured)
    sd = {k: v.clone() for k, v in engine.model.state_dict().items()}
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(engine.agenerate(r)) for r in reqs]
    await asyncio.sleep(t_par / 3)
    await engine.update_weights(sd, engine.version + 1)
    await asyncio.gather(*tasks)
    t_upd = time.perf_counter() - t0
    return {"tokens": n_tok, "seq_s": t_seq, "par_s": t_par, "upd_s": t_upd}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--hidden-size", type=int, default=TinyModelConfig().hidden_size)
    ap.add_argument("--layers", type=int, default=TinyModelConfig().num_hidden_layers)
    args = ap.parse_args()
    cfg = TinyModelConfig(
        hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size, num_hidden_layers=args.layers
    )
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_model(corpus_path(), Path(tmp) / "tiny", cfg)
        engine = TransformersEngine(str(Path(tmp) / "tiny"), max_batch_size=args.requests)
        tok = engine.tokenizer
        texts = ["Who founded the City Bank of New York?", "The capital of France is", "<think>", "Zürich"]
        reqs = [
            GenerationRequest(
                tok.encode(texts[i % len(texts)] + " " * (i % 5), add_special_tokens=False),
                SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=i, stop_token_ids=[]),
            )
            for i in range(args.requests)
        ]
        r = asyncio.run(bench(engine, reqs))
        asyncio.run(engine.aclose())
    print(f"model: hidden {args.hidden_size}, {args.layers} layers; {args.requests} requests")
    print(f"one by one : {r['tokens'] / r['seq_s']:8.1f} tokens/s ({r['seq_s']:.2f} s)")
    print(f"concurrent : {r['tokens'] / r['par_s']:8.1f} tokens/s ({r['par_s']:.2f} s)")
    print(f"speed-up   : {r['seq_s'] / r['par_s']:.2f}x")
    print(f"concurrent + one mid-flight weight update: {r['upd_s']:.2f} s ({r['upd_s'] / r['par_s']:.2f}x)")


if __name__ == "__main__":
    main()
