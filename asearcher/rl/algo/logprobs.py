"""Per-token logprobs exactly as the engines record them: log_softmax(logits / T)[token], T = sampling temperature.

Position t of the result holds log p(token_t | tokens_<t); position 0 (no context) is 0, matching the
TrainSequence convention (0 on prompt tokens). Sequences are right-padded into one batch with an attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def effective_temperature(t: float) -> float:
    # Greedy decoding (T=0) records plain log_softmax(logits) in the engines; mirror that.
    return t if t and t > 0 else 1.0


def pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int = 0, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists -> (input_ids [B, L], attention_mask [B, L])."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        att[i, : len(r)] = 1
    return ids.to(device), att.to(device)


def loss_positions(seqs: Sequence, shape: torch.Size, device: str | torch.device = "cpu") -> torch.Tensor:
    """bool [B, L]: the loss tokens (`loss_mask`) of right-padded sequences, for token_logprobs(positions=...)."""
    pos = torch.zeros(shape, dtype=torch.bool)
    for i, s in enumerate(seqs):
        pos[i, : len(s.loss_mask)] = torch.tensor(s.loss_mask, dtype=torch.bool)
    return pos.to(device)


# Architectures whose logits are exactly lm_head(final hidden state): for these, the logits of only the positions a
# loss needs can be computed (others, e.g. with soft-capped or scaled logits, take the full path).
_PLAIN_HEAD_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral"})


def _plain_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    decoder, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if decoder is None or head is None:
        return None
    return decoder, head


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float,
    *,
    with_entropy: bool = False,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logprobs [B, L], entropy [B, L] or None). Gradient flows when called outside no_grad.

    `positions` (bool [B, L], optional): the only positions whose logprob is needed (the loss tokens); the others
    come back as 0. In agent trajectories most tokens are prompt and tool output, so computing the vocabulary
    projection and log-softmax for the loss tokens alone saves much of a step; the values at `positions` are the
    same as without it.
    """
    T = effective_temperature(temperature)
    B = input_ids.shape[0]
    zero = torch.zeros((B, 1), dtype=torch.float32, device=input_ids.device)
    parts = _plain_head(model) if positions is not None else None
    if parts is not None:
        decoder, head = parts
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        want = positions[:, 1:].to(device=hidden.device, dtype=torch.bool)  # token t is predicted at t - 1
        rows, cols = want.nonzero(as_tuple=True)
        logits = head(hidden[:, :-1][rows, cols]).float() / T
        logp_sel = torch.log_softmax(logits, dim=-1)
        lp_sel = logp_sel.gather(-1, input_ids[:, 1:][rows, cols].unsqueeze(-1)).squeeze(-1)
        lp = torch.zeros(want.shape, dtype=lp_sel.dtype, device=hidden.device).index_put((rows, cols), lp_sel)
        lp = torch.cat([zero, lp], dim=1)
        ent = None
        if with_entropy:
            with torch.no_grad():
                e_sel = -(logp_sel.exp() * logp_sel).sum(-1)
                e = torch.zeros(want.shape, dtype=e_sel.dtype, device=hidden.device).index_put(
                    (rows, cols), e_sel
                )
                ent = torch.cat([zero, e], dim=1)
        return lp, ent
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits[:, :-1, :].float() / T
    logp_all = torch.log_softmax(logits, dim=-1)
    tgt = input_ids[:, 1:].unsqueeze(-1)
    lp = logp_all.gather(-1, tgt).squeeze(-1)
    lp = torch.cat([zero.to(lp.dtype), lp], dim=1)
    ent = None
    if with_entropy:
        with torch.no_grad():
            e = -(logp_all.exp() * logp_all).sum(-1)
            ent = torch.cat([zero.to(e.dtype), e], dim=1)
    if positions is not None:  # the same contract as the fast path: 0 outside `positions`
        keep = positions.to(device=lp.device, dtype=torch.bool)
        lp = lp * keep
        if ent is not None:
            ent = ent * keep
    return lp, ent
