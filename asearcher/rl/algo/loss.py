"""Decoupled PPO loss (AReaL's objective, used by ASearcher) and the per-token loss weights.

Per generated token t, with pi = current policy, prox = the trainer's own policy at the start of the step
(recomputed, no grad) and behav = the engine's policy at generation time (recorded logprobs):

    ratio    = exp(logp - prox_logp)
    pg       = max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))
    w_behav  = exp(prox_logp - behav_logp); tokens with w_behav > cap are masked out (weight 0)
    loss     = sum_t weight_t * w_behav_t * pg_t (+ kl_coef * k3(ref || pi))

The proximal policy decouples the trust region (clip around prox) from off-policy correction (w_behav), so
stale rollouts from older weights can be trained on. With use_decoupled_loss=False the ratio is taken against
the behaviour logprobs directly and there is no separate weight (plain PPO).

weight_t encodes the normalisation: 'areal' = 1 / (loss tokens in the minibatch) (a token mean; the cap-masked
tokens stay in the denominator as upstream), 'grpo' = 1 / (trajectories in the minibatch x that trajectory's
generated tokens) (paper Eq. 1). Precomputing weights makes micro-batching exact: micro-batch losses just add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from asearcher.rl.algo.types import TrainSequence


def token_weights(seqs: Sequence[TrainSequence], mode: str) -> list[float]:
    """One scalar weight per sequence (applied to each of its loss tokens) for one minibatch."""
    if mode == "areal":
        n = sum(sum(s.loss_mask) for s in seqs)
        return [1.0 / n if n else 0.0 for _ in seqs]
    if mode == "grpo":
        trajs = {(s.qid, s.traj_index) for s in seqs if sum(s.loss_mask)}
        out = []
        for s in seqs:
            nt = s.n_traj_tokens or sum(s.loss_mask)
            out.append(1.0 / (len(trajs) * nt) if nt and trajs else 0.0)
        return out
    raise ValueError(f"unknown advantage/normalisation mode {mode!r} (expected 'areal' or 'grpo')")


@dataclass
class LossStats:
    """Sums over loss tokens (add across micro-batches, divide by n_tokens at the end)."""

    n_tokens: float = 0.0
    clipped: float = 0.0  # tokens where the clipped branch is active
    behav_masked: float = 0.0  # tokens dropped by the behaviour-weight cap
    behav_weight: float = 0.0  # sum of (unmasked) behaviour weights
    ratio: float = 0.0
    kl: float = 0.0

    def add(self, o: LossStats) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(o, k))


def decoupled_ppo_loss(
    logp: torch.Tensor,
    prox_logp: torch.Tensor | None,
    behav_logp: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    weights: torch.Tensor,
    *,
    eps_clip: float,
    behav_imp_weight_cap: float | None,
    use_decoupled: bool = True,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """All tensors have the same shape (any); returns (scalar loss, stats). Only `logp` carries gradient."""
    mask = loss_mask.bool()
    adv = advantages.detach()
    behav = behav_logp.detach()
    if use_decoupled:
        if prox_logp is None:
            raise ValueError("decoupled PPO needs proximal logprobs (recompute them before the update)")
        anchor = prox_logp.detach()
    else:
        anchor = behav
    ratio = torch.where(mask, torch.exp(logp - anchor), torch.zeros_like(logp))
    clipped_ratio = ratio.clamp(1.0 - eps_clip, 1.0 + eps_clip)
    pg1 = -adv * ratio
    pg2 = -adv * clipped_ratio
    pg = torch.maximum(pg1, pg2)
    clipped = (pg2 > pg1) & mask
    keep = mask
    bw = torch.ones_like(logp)
    if use_decoupled:
        bw = torch.exp(anchor - behav)
        if behav_imp_weight_cap is not None:
            keep = mask & (bw <= behav_imp_weight_cap)
        bw = torch.where(keep, bw, torch.zeros_like(bw))
        pg = pg * bw
    w = weights.detach()
    loss = torch.where(mask, pg * w, torch.zeros_like(pg)).sum()
    kl_sum = 0.0
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs reference logprobs")
        d = ref_logp.detach() - logp
        k3 = torch.exp(d) - d - 1.0  # unbiased, non-negative KL(pi || ref) estimator
        k3 = torch.where(mask, k3, torch.zeros_like(k3))
        loss = loss + kl_coef * (k3 * w).sum()
        kl_sum = float(k3.detach().sum())
    st = LossStats(
        n_tokens=float(mask.sum()),
        clipped=float(clipped.sum()),
        behav_masked=float((mask & ~keep).sum()),
        behav_weight=float(bw[keep].sum()) if use_decoupled else float(keep.sum()),
        ratio=float(ratio.detach()[mask].sum()),
        kl=kl_sum,
    )
    return loss, st
