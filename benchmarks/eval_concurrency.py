"""Evaluation throughput: trajectories/s with 1 and with 32 trajectories in flight, measured side by side.

REAL: the retrieval server (BM25 over the mirror corpus, started with running_server; the index is built if
missing), HTTP on 127.0.0.1 through LocalTools, the ASearcher agent with its real prompts and parsing, and the
eval runner (semaphore, durable per-sample appends, aggregation).
INJECTED: every tool call first sleeps --tool-latency-ms (default 200 ms), standing in for a web search or
page-reader API.
ENGINE: by default a fast engine double (ScriptedSearchEngine below): each act turn answers with
`<search>question</search>` for --searches turns, then `<answer>...</answer>`; each read turn with a short
note; it sleeps --llm-latency-ms per call, as a batching engine would. This measures the harness, not CPU
decoding. `--engine tiny` uses the real tiny TransformersEngine instead (random weights: it rarely calls
tools, so the tool latency barely matters there).

  python benchmarks/eval_concurrency.py                 # ~1 min on 2 CPU cores
  python benchmarks/eval_concurrency.py --n-parallel 128 --tool-latency-ms 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini checks it at import time

from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine  # noqa: E402
from asearcher.tools.base import SearchHit, ToolBackend  # noqa: E402


class LatencyTools(ToolBackend):
    """Wraps a real ToolBackend; every call sleeps `latency_s` first (a slow remote search API)."""

    def __init__(self, inner: ToolBackend, latency_s: float):
        self.inner, self.latency_s = inner, latency_s
        self.name = f"{inner.name}+{int(latency_s * 1000)}ms"
        self.calls = 0

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        self.calls += 1
        await asyncio.sleep(self.latency_s)
        return await self.inner.search(query, topk)

    async def access(self, url: str) -> str | None:
        self.calls += 1
        await asyncio.sleep(self.latency_s)
        return await self.inner.access(url)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ScriptedSearchEngine(InferenceEngine):
    """A fast engine double that drives the real agent through `searches` searches and an answer.

    The query is the question and the answer the given one (maps keyed by question id; the engine reads it
    from the request's rid "<qid>#<sample>"; defaults: a fixed query, "unknown");
    output token ids are the tokenizer's encoding of the scripted text, as a real engine would return.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        searches: int = 2,
        latency_s: float = 0.0,
        questions: dict[str, str] | None = None,
        answers: dict[str, str] | None = None,
    ):
        self.tokenizer = tokenizer
        self.searches, self.latency_s = searches, latency_s
        self.questions = questions or {}
        self.answers = answers or {}
        self.acts: dict[str, int] = {}

    @property
    def version(self) -> int:
        return 0

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        await asyncio.sleep(self.latency_s)
        rid = request.rid or ""
        qid = rid.rsplit("#", 1)[0]
        if "</think>" in request.sampling.stop:  # a read turn
            text, stop = "The results are noted.</think>", "</think>"
        else:
            n = self.acts.get(rid, 0)
            self.acts[rid] = n + 1
            if n < self.searches:
                query = self.questions.get(qid, "capital of France")
                text, stop = f"<search>{query}</search>", "</search>"
            else:
                text, stop = f"<answer>{self.answers.get(qid, 'unknown')}</answer>", "</answer>"
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return GenerationResult(ids, [0.0] * len(ids), [0] * len(ids), "stop", stop_string=stop, text=text)


def ensure_tiny_model(corpus: Path, cache: Path) -> Path:
    from asearcher.config import TinyModelConfig
    from asearcher.llm.tiny import build_tiny_model

    out = cache / "tiny"
    if not (out / "config.json").exists():
        print(f"building the tiny model (tokenizer for the agent) in {out} ...", flush=True)
        build_tiny_model(
            corpus,
            out,
            TinyModelConfig(
                vocab_size=1024,
                hidden_size=64,
                intermediate_size=128,
                tokenizer_corpus_lines=3000,
                max_position_embeddings=2048,
            ),
        )
    return out


def ensure_index(corpus: Path, index: Path) -> Path:
    from asearcher.retrieval.index import build_index

    if not (index / "index_meta.json").exists():
        print(f"building the BM25 index in {index} ...", flush=True)
    build_index(corpus, index)  # a no-op when an up-to-date index exists
    return index


async def measure(
    c: int, n: int, rows: list[dict], a: argparse.Namespace, tokenizer: Any, base_url: str, work: Path
) -> dict[str, Any]:
    from asearcher.agent import make_agent
    from asearcher.config import AgentConfig
    from asearcher.eval.aggregate import seeds_for
    from asearcher.eval.metrics import METRICS
    from asearcher.eval.runner import EvalJob, run_eval
    from asearcher.llm.engine import SamplingParams
    from asearcher.retrieval.client import RetrievalClient
    from asearcher.tools.local import LocalTools

    rows = rows[:n]
    agent_cfg = AgentConfig(max_turns=2 * a.searches + 2, max_new_tokens=64, max_context_tokens=100_000)
    agent = make_agent(agent_cfg, tokenizer)
    tools = LatencyTools(LocalTools(RetrievalClient(base_url)), a.tool_latency_ms / 1000)
    if a.engine == "double":
        engine: InferenceEngine = ScriptedSearchEngine(
            tokenizer,
            searches=a.searches,
            latency_s=a.llm_latency_ms / 1000,
            questions={str(r["id"]): r["question"] for r in rows},
        )
    else:
        from asearcher.llm.transformers_engine import TransformersEngine

        engine = TransformersEngine(str(a.tiny_dir), device="cpu", max_batch_size=max(c, 1))
    job = EvalJob(
        benchmark="Bamboogle",
        rows=rows,
        k=1,
        seeds=seeds_for(1, 1),
        sampling=SamplingParams(max_new_tokens=64, temperature=0.6, top_p=0.95),
        metrics={"f1": METRICS["f1"]},
        out_dir=work / f"c{c}",
        card={"benchmark": {"name": "Bamboogle"}},
        concurrency=c,
        progress=False,
    )
    try:
        t0 = time.perf_counter()
        agg = await run_eval(job, agent=agent, engine=engine, tools=tools)
        wall = time.perf_counter() - t0
    finally:
        await tools.aclose()
        await engine.aclose()
    return {
        "concurrency": c,
        "trajectories": n,
        "wall_s": wall,
        "rate": n / wall,
        "tool_calls": tools.calls,
        "avg_searches": agg["stats"]["avg_searches"],
        "avg_turns": agg["stats"]["avg_turns"],
        "errors": agg["errors"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mirror", default=os.environ.get("ASEARCHER_MIRROR"))
    p.add_argument("--index", default=str(REPO / "results/index/bm25"), help="BM25 index (built if missing)")
    p.add_argument("--cache", default=str(REPO / "results/bench/eval_concurrency"), help="tiny model cache")
    p.add_argument("--engine", choices=["double", "tiny"], default="double")
    p.add_argument("--tool-latency-ms", type=float, default=200.0)
    p.add_argument("--llm-latency-ms", type=float, default=20.0, help="engine double: sleep per LLM call")
    p.add_argument("--searches", type=int, default=2, help="engine double: searches per trajectory")
    p.add_argument("--n-serial", type=int, default=8, help="trajectories measured at 1 in flight")
    p.add_argument(
        "--n-parallel", type=int, default=96, help="trajectories measured at --concurrency in flight"
    )
    p.add_argument("--concurrency", type=int, default=32)
    a = p.parse_args()

    from transformers import AutoTokenizer

    from asearcher.config import RetrievalConfig
    from asearcher.eval.loaders import load_benchmark
    from asearcher.retrieval.service import running_server

    if not a.mirror:
        raise SystemExit("no mirror: pass --mirror or set ASEARCHER_MIRROR")
    mirror = Path(a.mirror)
    corpus = mirror / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"
    pages = mirror / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl"
    a.tiny_dir = ensure_tiny_model(corpus, Path(a.cache))
    tokenizer = AutoTokenizer.from_pretrained(str(a.tiny_dir))
    index = ensure_index(corpus, Path(a.index))
    rows = load_benchmark("Bamboogle", mirror / "ASearcher-test-data")
    n_max = max(a.n_serial, a.n_parallel)
    rows = [dict(r, id=f"{r['id']}-{i // len(rows)}") for i, r in enumerate(rows * (n_max // len(rows) + 1))][
        :n_max
    ]

    engine_desc = (
        f"engine DOUBLE (scripted: {a.searches} searches + answer, {a.llm_latency_ms:.0f} ms per call)"
        if a.engine == "double"
        else "engine: real tiny TransformersEngine (CPU)"
    )
    print(
        f"{engine_desc}; real BM25 retrieval server + {a.tool_latency_ms:.0f} ms injected latency per tool call"
    )
    with running_server(index, corpus, pages, retrieval=RetrievalConfig()) as server:
        base_url = server.url
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            # warm-up (JIT, HTTP pools), not measured
            asyncio.run(measure(4, 4, rows, a, tokenizer, base_url, work / "warm"))
            serial = asyncio.run(measure(1, a.n_serial, rows, a, tokenizer, base_url, work))
            parallel = asyncio.run(measure(a.concurrency, a.n_parallel, rows, a, tokenizer, base_url, work))
    for r in (serial, parallel):
        print(
            f"  in flight {r['concurrency']:>3}: {r['trajectories']:>4} trajectories in {r['wall_s']:6.2f} s = "
            f"{r['rate']:6.2f} traj/s  (avg searches {r['avg_searches']:.2f}, turns {r['avg_turns']:.2f}, "
            f"errors {r['errors']})"
        )
    ratio = parallel["rate"] / serial["rate"]
    print(f"speed-up at {a.concurrency} in flight: {ratio:.1f}x  (target >= 8x)")


if __name__ == "__main__":
    main()
