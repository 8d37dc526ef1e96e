"""Batch preparation shared by every trainer backend: pack the groups' trajectories into token sequences with
advantages, split them into minibatches of whole trajectories and token-bounded micro-batches, and measure how stale
each generated token's policy was. Pure functions over `TrainSequence`s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from asearcher.config import RLConfig
from asearcher.rl.algo.advantages import assign_advantages
from asearcher.rl.algo.packing import PackStats, pack_trajectory
from asearcher.rl.algo.types import Group, TrainSequence

log = logging.getLogger(__name__)


def build_sequences(groups: Sequence[Group], cfg: RLConfig) -> tuple[list[TrainSequence], dict[str, float]]:
    """Pack every trajectory of every group and assign advantages. Returns (sequences, metrics)."""
    if not groups:
        raise ValueError("train_step needs at least one group")
    cap = cfg.pack_max_tokens or cfg.max_tokens_per_mb
    seqs: list[TrainSequence] = []
    keys: list[tuple[int, int]] = []
    stats = PackStats()
    t_index = 0
    for g, grp in enumerate(groups):
        for i, st in enumerate(grp.samples):
            for s in pack_trajectory(
                st.trajectory, st.reward, max_tokens=cap, traj_index=t_index, stats=stats
            ):
                seqs.append(s)
                keys.append((g, i))
            t_index += 1
    info = assign_advantages(seqs, [grp.rewards for grp in groups], keys, cfg)
    rewards = [r for grp in groups for r in grp.rewards]
    info.update(
        n_groups=float(len(groups)),
        n_trajs=float(t_index),
        reward_mean=float(np.mean(rewards)) if rewards else 0.0,
        pack_truncated_tokens=float(stats.truncated_tokens),
        pack_skipped_calls=float(len(stats.skipped_calls)),
        pack_truncated_calls=float(stats.truncated_calls),
        pack_appended_calls=float(stats.appended_calls),
        # generated tokens the cap kept out of the loss (whole skipped calls + cut tails); 0 in a sound recipe
        pack_untrained_frac=stats.truncated_tokens / max(1, stats.output_tokens),
    )
    if stats.skipped_calls or stats.truncated_calls:
        log.warning(
            "this step's packing cap (%d tokens) dropped %d LLM calls and cut %d more: %d of %d generated tokens are "
            "not trained; raise rl.pack_max_tokens / rl.max_tokens_per_mb to the agent's max_context_tokens",
            cap,
            len(stats.skipped_calls),
            stats.truncated_calls,
            stats.truncated_tokens,
            stats.output_tokens,
        )
    return seqs, info


def split_minibatches(seqs: Sequence[TrainSequence], n: int) -> list[list[TrainSequence]]:
    """n minibatches of whole trajectories (a trajectory's sequences stay together), in order."""
    trajs: dict[int, list[TrainSequence]] = {}
    for s in seqs:
        trajs.setdefault(s.traj_index, []).append(s)
    order = list(trajs)
    n = max(1, min(n, len(order)))
    out: list[list[TrainSequence]] = [[] for _ in range(n)]
    for k, t in enumerate(order):
        out[k * n // len(order)].extend(trajs[t])
    return [m for m in out if m]


def split_microbatches(
    seqs: Sequence[Any], max_tokens: int, length=lambda s: len(s.input_ids)
) -> list[list[int]]:
    """Indices grouped so that (rows x longest row) <= max_tokens; a longer row goes alone. Sorted by length so
    padding waste stays small."""
    order = sorted(range(len(seqs)), key=lambda i: -length(seqs[i]))
    mbs: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        n = length(seqs[i])
        if cur and max(cur_max, n) * (len(cur) + 1) > max_tokens:
            mbs.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        mbs.append(cur)
    return mbs


def staleness_metrics(seqs: Sequence[TrainSequence], version: int) -> dict[str, float]:
    """How many versions behind the trainer each generated token's policy was (unknown versions -1 skipped)."""
    st = [version - v for s in seqs for v, m in zip(s.versions, s.loss_mask, strict=True) if m and v >= 0]
    if not st:
        return {"staleness_mean": 0.0, "staleness_max": 0.0, "staleness_known_frac": 0.0}
    n = sum(sum(s.loss_mask) for s in seqs)
    return {
        "staleness_mean": float(np.mean(st)),
        "staleness_max": float(max(st)),
        "staleness_known_frac": len(st) / max(1, n),
    }
