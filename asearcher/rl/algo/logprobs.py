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


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float,
    *,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logprobs [B, L], entropy [B, L] or None). Gradient flows when called outside no_grad."""
    T = effective_temperature(temperature)
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits[:, :-1, :].float() / T
    logp_all = torch.log_softmax(logits, dim=-1)
    tgt = input_ids[:, 1:].unsqueeze(-1)
    lp = logp_all.gather(-1, tgt).squeeze(-1)
    B = input_ids.shape[0]
    zero = torch.zeros((B, 1), dtype=lp.dtype, device=lp.device)
    lp = torch.cat([zero, lp], dim=1)
    ent = None
    if with_entropy:
        with torch.no_grad():
            e = -(logp_all.exp() * logp_all).sum(-1)
            ent = torch.cat([zero, e], dim=1)
    return lp, ent
