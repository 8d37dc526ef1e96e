"""End to end: `asearcher eval` with the real tiny transformers engine and a real retrieval server (BM25 over
the mirror corpus, HTTP on 127.0.0.1) on a few Bamboogle questions; and the real agent + real tools driven by
a scripted engine, so that searches really go through the server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from asearcher.cli import main
from asearcher.eval.protocol import file_sha256
from asearcher.utils.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "eval_concurrency", REPO / "benchmarks" / "eval_concurrency.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def retrieval_url(retrieval_server):
    """The shared session retrieval server (tests/fixtures/retrieval.py)."""
    return retrieval_server.url


def test_asearcher_eval_tiny_engine_real_server(
    tmp_path, tiny_model_dir, retrieval_url, mirror_dir, monkeypatch
):
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", retrieval_url)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--model",
        "tiny",
        "--benchmark",
        "Bamboogle",
        "--releases",
        str(mirror_dir),
        "--output",
        str(out),
        "--max-samples",
        "3",
        "--no-progress",
        "--set",
        f"engine.model={tiny_model_dir}",
        "--set",
        f"results_dir={tmp_path}",
        "--set",
        "eval.k=2",
        "--set",
        "eval.concurrency=4",
        # evaluation's own agent settings (eval.agent, on top of `agent`), scaled to the tiny model
        "--set",
        "eval.agent.max_turns=3",
        "--set",
        "eval.agent.max_new_tokens=12",
        # the tiny model as a (hopeless) judge: exercises the judge wiring end to end
        "--set",
        "eval.judge.enabled=true",
        "--set",
        "eval.judge.kind=transformers",
        "--set",
        f"eval.judge.model={tiny_model_dir}",
        "--set",
        "eval.judge.max_retries=0",
        "--set",
        "eval.judge.max_new_tokens=4",
    ]
    assert main(argv) == 0
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["n"] == 3 and agg["n_samples"] == 6 and agg["k"] == 2 and agg["errors"] == 0
    assert set(agg["metrics"]) == {"f1", "em", "cem", "judge"}
    assert sum(agg["judge_status"].values()) == 6
    card = agg["protocol"]
    bench_file = mirror_dir / "ASearcher-test-data" / "Bamboogle" / "test.jsonl"
    assert card["benchmark"] == {"name": "Bamboogle", "file": "test.jsonl", "sha256": file_sha256(bench_file)}
    assert card["model"]["name"] == "tiny" and card["model"]["kind"] == "transformers"
    assert card["retriever"]["backend"] == "bm25" and card["retriever"]["topk"] == 5
    assert card["search_backend"] == "local" and card["judge"] == str(tiny_model_dir)
    assert card["judge_details"]["max_retries"] == 0 and card["judge_details"]["prompt"] == "judge.txt"
    assert card["agent"]["max_turns"] == 3 and card["agent"]["valid_instruction_prob"] == 1.0
    assert card["eval_agent"]["overrides"] == {
        "valid_instruction_prob": 1.0,
        "max_turns": 3,
        "max_new_tokens": 12,
    }
    assert card["prompt_hash"] and card["seeds"][0] == 1 and card["setting"] == "asearcher-bm25-top5"
    assert (out / "config.yaml").exists()
    samples = read_jsonl(out / "samples.jsonl")
    assert len(samples) == 6 and all(1 <= r["stats"]["turns"] <= 3 for r in samples)
    trajs = read_jsonl(out / "trajectories.jsonl")
    first = trajs[0]["trajectory"]
    assert first["events"][0]["type"] == "llm" and first["events"][0]["input_ids"]
    assert {t["trajectory"]["meta"]["prompt_variant"] for t in trajs} == {"valid"}  # upstream's eval prompt
    # seeded sampling: the two samples of a question start from the same prompt but use different seeds
    assert trajs[0]["seed"] != trajs[1]["seed"]

    # a rerun of the finished evaluation does no new work and writes the same aggregate
    before = (out / "samples.jsonl").read_bytes()
    assert main(argv) == 0
    assert (out / "samples.jsonl").read_bytes() == before
    assert json.loads((out / "aggregate.json").read_text())["metrics"] == agg["metrics"]


def test_real_agent_and_tools_through_the_server(tmp_path, tiny_model_dir, retrieval_url, mirror_dir):
    """The real ASearcher agent, LocalTools over HTTP and the runner; a scripted engine searches twice with
    the question, then answers with the gold answer."""
    from transformers import AutoTokenizer

    from asearcher.agent import make_agent
    from asearcher.config import AgentConfig
    from asearcher.eval.aggregate import seeds_for
    from asearcher.eval.loaders import load_benchmark
    from asearcher.eval.metrics import METRICS
    from asearcher.eval.runner import EvalJob, run_eval
    from asearcher.llm.engine import SamplingParams
    from asearcher.retrieval.client import RetrievalClient
    from asearcher.tools.local import LocalTools

    bench = _bench_module()
    rows = load_benchmark("Bamboogle", mirror_dir / "ASearcher-test-data", limit=4)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    engine = bench.ScriptedSearchEngine(
        tok,
        searches=2,
        questions={r["id"]: r["question"] for r in rows},
        answers={r["id"]: r["answers"][0] for r in rows},
    )
    agent = make_agent(AgentConfig(max_turns=8, max_new_tokens=64, max_context_tokens=100_000), tok)
    tools = bench.LatencyTools(LocalTools(RetrievalClient(retrieval_url)), 0.0)

    job = EvalJob(
        benchmark="Bamboogle",
        rows=rows,
        k=1,
        seeds=seeds_for(1, 1),
        sampling=SamplingParams(),
        metrics={"f1": METRICS["f1"]},
        out_dir=tmp_path,
        card={"benchmark": {"name": "Bamboogle"}},
        concurrency=4,
        progress=False,
    )

    async def go():
        try:
            return await run_eval(job, agent=agent, engine=engine, tools=tools)
        finally:
            await tools.aclose()

    agg = asyncio.run(go())
    assert agg["errors"] == 0 and agg["tool_failures"] == 0
    assert agg["stats"]["avg_searches"] == 2.0 and agg["metrics"]["f1"]["avg@1"] == 1.0
    traj = read_jsonl(tmp_path / "trajectories.jsonl")[0]["trajectory"]
    searches = [e for e in traj["events"] if e["type"] == "tool"]
    assert searches[0]["argument"] == rows[0]["question"] and len(searches[0]["result"]) == 5
    assert all(
        hit["url"].startswith("http") and hit["contents"].startswith('"') for hit in searches[0]["result"]
    )
