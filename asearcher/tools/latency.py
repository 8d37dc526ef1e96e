"""Injected tool latency: a ToolBackend wrapper that sleeps before each call, for benchmarks.

Real search APIs and page readers answer in hundreds of milliseconds to seconds, and in agentic RL some trajectories
run far longer than others (the paper: most finish in a few turns, a few run 40+). `LatencyTools` puts that time
back in front of a fast local backend (the BM25 server on 127.0.0.1 answers in milliseconds): every search/access
first sleeps a delay drawn from `LongTail`, then calls the wrapped backend for real.

`LongTail` draws a number of "turns" like the paper's turn counts and multiplies it by `turn_s`: with probability
`p_long` a long run (`long_min` plus a Pareto(`alpha`) tail), else 1 + an exponential count of mean `short_mean`
capped at `short_max`. One tool call thus stands for the tool time of a whole short or long trajectory.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass

from asearcher.tools.base import SearchHit, ToolBackend


def paper_like_turns(
    rng: random.Random,
    p_long: float = 0.05,
    long_min: int = 40,
    alpha: float = 2.0,
    short_mean: float = 2.0,
    short_max: int = 10,
) -> int:
    """A turn count: mostly 1..short_max+1 (exponential), with probability p_long long_min + 4 x Pareto(alpha)."""
    if rng.random() < p_long:
        return int(long_min + rng.paretovariate(alpha) * 4)
    return 1 + min(int(rng.expovariate(1 / short_mean)), short_max)


@dataclass
class LongTail:
    """Delay of one tool call: `turn_s` seconds per drawn turn (see `paper_like_turns`)."""

    turn_s: float = 0.1
    p_long: float = 0.05
    long_min: int = 40
    alpha: float = 2.0
    short_mean: float = 2.0
    short_max: int = 10

    def __post_init__(self) -> None:
        if (
            self.turn_s < 0
            or not 0 <= self.p_long <= 1
            or self.alpha <= 0
            or self.short_mean <= 0
            or self.short_max < 0
        ):
            raise ValueError(f"invalid tool latency settings: {self}")

    def draw(self, rng: random.Random) -> float:
        turns = paper_like_turns(rng, self.p_long, self.long_min, self.alpha, self.short_mean, self.short_max)
        return self.turn_s * turns

    def mean_s(self) -> float:
        """Expected delay (for reports; the long branch's int() rounding is ignored)."""
        lam = 1 / self.short_mean
        # E[min(floor(X), short_max)] for X ~ Exp(lam): sum over k=1..short_max of P(X >= k)
        short = 1 + sum(math.exp(-lam * k) for k in range(1, self.short_max + 1))
        long = self.long_min + 4 * (self.alpha / (self.alpha - 1) if self.alpha > 1 else float("inf"))
        return self.turn_s * ((1 - self.p_long) * short + self.p_long * long)


class LatencyTools(ToolBackend):
    """Wraps a ToolBackend; every call first sleeps `latency.draw(rng)` seconds (seeded), then runs for real."""

    def __init__(self, inner: ToolBackend, latency: LongTail, seed: int = 0):
        self.inner = inner
        self.latency = latency
        self.rng = random.Random(seed)
        self.name = f"{inner.name}+latency"
        self.calls = 0
        self.injected_s = 0.0  # total injected delay so far

    async def _wait(self) -> None:
        delay = self.latency.draw(self.rng)
        self.calls += 1
        self.injected_s += delay
        if delay > 0:
            await asyncio.sleep(delay)

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        await self._wait()
        return await self.inner.search(query, topk)

    async def access(self, url: str) -> str | None:
        await self._wait()
        return await self.inner.access(url)

    async def aclose(self) -> None:
        await self.inner.aclose()
