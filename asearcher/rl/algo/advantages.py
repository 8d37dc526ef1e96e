"""Trajectory-level advantages, broadcast to every generated token of every sequence of the trajectory.

Two recipes (paper-notes §4.1, §10):

- 'areal' (released code): r_i - group mean, then (x + reward_bias) * reward_scaling clipped to +-reward_clip,
  then a GLOBAL z-normalisation over all loss tokens of the batch (token-weighted mean and population std,
  (A - mean) / (std + eps)). No std division inside the group.
- 'grpo' (paper Eq. 1): (r_i - group mean) / (group std + eps), with the sample (n-1) std as in the GRPO
  reference implementations; a group of one trajectory gets advantage 0. The loss side (loss.py) then
  normalises per trajectory token count and averages over trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from asearcher.config import RLConfig
from asearcher.rl.algo.types import TrainSequence


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def areal_trajectory_advantages(rewards: Sequence[float], cfg: RLConfig) -> list[float]:
    """Group-centred, biased, scaled and clipped (before the global token normalisation)."""
    m = _mean(rewards)
    c = cfg.reward_clip
    return [max(-c, min(c, (r - m + cfg.reward_bias) * cfg.reward_scaling)) for r in rewards]


def grpo_trajectory_advantages(rewards: Sequence[float], cfg: RLConfig) -> list[float]:
    n = len(rewards)
    if n < 2:
        return [0.0] * n
    m = _mean(rewards)
    std = math.sqrt(sum((r - m) ** 2 for r in rewards) / (n - 1))
    return [(r - m) / (std + cfg.grpo_std_eps) for r in rewards]


def global_token_normalize(seqs: Sequence[TrainSequence], eps: float) -> tuple[float, float]:
    """In place: z-normalise seq.advantage weighted by each sequence's loss-token count. Returns (mean, std)."""
    w = [sum(s.loss_mask) for s in seqs]
    tot = sum(w)
    if tot == 0:
        return 0.0, 0.0
    mean = sum(wi * s.advantage for wi, s in zip(w, seqs, strict=True)) / tot
    var = max(0.0, sum(wi * s.advantage**2 for wi, s in zip(w, seqs, strict=True)) / tot - mean**2)
    std = math.sqrt(var)
    for s in seqs:
        s.advantage = (s.advantage - mean) / (std + eps)
    return mean, std


def assign_advantages(
    seqs: Sequence[TrainSequence],
    group_rewards: Sequence[Sequence[float]],
    traj_keys: Sequence[tuple[int, int]],
    cfg: RLConfig,
) -> dict[str, float]:
    """Set `advantage` on every sequence.

    group_rewards[g][i] is the raw reward of trajectory i of group g; traj_keys[k] = (g, i) says which
    trajectory sequence k came from. Returns summary statistics for logging.
    """
    fn = areal_trajectory_advantages if cfg.advantage == "areal" else grpo_trajectory_advantages
    per_traj = [fn(list(r), cfg) for r in group_rewards]
    for s, (g, i) in zip(seqs, traj_keys, strict=True):
        s.advantage = float(per_traj[g][i])
    info: dict[str, float] = {}
    if cfg.advantage == "areal":
        mean, std = global_token_normalize(seqs, cfg.adv_norm_eps)
        info.update(adv_raw_token_mean=mean, adv_raw_token_std=std)
    advs = [s.advantage for s in seqs]
    if advs:
        info.update(adv_mean=_mean(advs), adv_max=max(advs), adv_min=min(advs))
    return info
