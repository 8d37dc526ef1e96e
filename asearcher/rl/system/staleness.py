"""Staleness-bounded admission control (AReaL's rule, paper-notes §4.6).

A new question (group) may start only while

    accepted + running < (eta + version + 1) * batch_size     and     running < max_concurrent_rollouts

where `accepted` counts every group that finished and passed dynamic filtering (cumulative, including the
ones already trained), `running` the groups in flight, and `version` the trainer's current weight version.
So at admission time a group always lands within the first (eta + version + 1) batches' worth of groups:
had groups finished in admission order, it would be trained at most eta versions after it started.
Groups that finish late (long trajectories) are never discarded; they are trained when they arrive.
With eta = 0 nothing for version v+1 starts before batch v is trained: synchronous RL from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StalenessManager:
    batch_size: int
    eta: int
    max_concurrent: int
    accepted: int = 0  # cumulative groups accepted (finished and not filtered out)
    running: int = 0  # groups in flight
    rejected: int = 0  # cumulative groups dropped by dynamic filtering

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eta < 0 or self.max_concurrent < 1:
            raise ValueError(f"invalid staleness settings: {self}")

    def capacity(self, version: int) -> int:
        """How many new groups may be admitted right now at trainer version `version`."""
        by_staleness = (self.eta + version + 1) * self.batch_size - (self.accepted + self.running)
        by_concurrency = self.max_concurrent - self.running
        return max(0, min(by_staleness, by_concurrency))

    def slot(self) -> int:
        """Batch slot (0-based) a group admitted now occupies in admission order."""
        return (self.accepted + self.running) // self.batch_size

    def on_admit(self, version: int) -> None:
        if self.capacity(version) <= 0:
            raise RuntimeError("admission beyond the staleness/concurrency bound")
        self.running += 1

    def on_accept(self) -> None:
        self.running -= 1
        self.accepted += 1

    def on_reject(self) -> None:
        self.running -= 1
        self.rejected += 1

    def on_cancel(self) -> None:
        """A group that will be re-run later (worker death, checkpoint re-queue) frees its slot."""
        self.running -= 1

    def state(self) -> dict[str, int]:
        return {"accepted": self.accepted, "running": self.running, "rejected": self.rejected}
