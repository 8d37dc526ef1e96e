"""Injected tool latency (asearcher.tools.latency): long-tailed delays, seeded, in front of a real backend call."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest

from asearcher.tools.base import SearchHit, ToolBackend
from asearcher.tools.latency import LatencyTools, LongTail, paper_like_turns


class RecordingTools(ToolBackend):
    name = "recording"

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        self.closed = False

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        self.seen.append(("search", query))
        return [SearchHit(url=f"u/{query}", contents=f"{query} x{topk}")]

    async def access(self, url: str) -> str | None:
        self.seen.append(("access", url))
        return None if url == "missing" else f"page {url}"

    async def aclose(self) -> None:
        self.closed = True


def test_turn_counts_are_long_tailed_like_the_paper():
    rng = random.Random(0)
    turns = [paper_like_turns(rng, p_long=0.05, long_min=40) for _ in range(20000)]
    long = [t for t in turns if t >= 40]
    assert 0.04 < len(long) / len(turns) < 0.06  # p_long of the runs are 40+ turns
    assert all(1 <= t <= 11 for t in turns if t < 40)  # the others a few turns
    assert statistics.median(turns) <= 3 and max(turns) > 60


@pytest.mark.parametrize("short_max", [10, 3])
def test_mean_delay_matches_draws(short_max):
    tail = LongTail(turn_s=0.1, p_long=0.05, short_max=short_max)
    rng = random.Random(1)
    draws = [tail.draw(rng) for _ in range(50000)]
    assert statistics.fmean(draws) == pytest.approx(tail.mean_s(), rel=0.05)
    assert max(d for d in draws if d < 0.1 * tail.long_min) == pytest.approx(0.1 * (short_max + 1))


@pytest.mark.parametrize(
    "bad", [{"turn_s": -1}, {"p_long": 1.5}, {"alpha": 0}, {"short_mean": 0}, {"short_max": -1}]
)
def test_bad_settings_are_rejected(bad):
    with pytest.raises(ValueError, match="tool latency"):
        LongTail(**bad)


def test_calls_wait_the_drawn_delay_then_reach_the_backend():
    inner = RecordingTools()
    tail = LongTail(turn_s=0.01, p_long=0.0, short_mean=1.0)
    tools = LatencyTools(inner, tail, seed=7)
    expected = [tail.draw(random.Random(7)) for _ in range(1)]  # the first draw of the same seed

    async def main():
        t0 = time.perf_counter()
        hits = await tools.search("paris", 3)
        first = time.perf_counter() - t0
        page = await tools.access("missing")
        await tools.aclose()
        return hits, first, page

    hits, first, page = asyncio.run(main())
    assert hits[0].contents == "paris x3" and page is None  # results pass through unchanged
    assert inner.seen == [("search", "paris"), ("access", "missing")] and inner.closed
    assert first >= expected[0] - 1e-3
    assert tools.calls == 2 and tools.injected_s >= 2 * 0.01
    # same seed, same delays
    again = LatencyTools(RecordingTools(), tail, seed=7)
    asyncio.run(again.search("paris", 3))
    assert again.injected_s == pytest.approx(expected[0])
