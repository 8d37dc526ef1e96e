"""Sampling helpers shared by the engines and the trainer.

Behaviour logprob convention (what every engine records and what the RL trainer recomputes):
    logprob(token) = log_softmax(logits / T)[token]
with T = the request's temperature (T = 1 for greedy decoding), taken BEFORE top-p / top-k truncation. Sampling
itself draws from the truncated distribution; the recorded logprob deliberately ignores the truncation so that
the trainer can recompute it from logits alone (`token_logprobs`).
"""

from __future__ import annotations

from typing import Any

import torch

from asearcher.llm.engine import SamplingParams


def is_greedy(s: SamplingParams) -> bool:
    return bool(s.greedy) or s.temperature <= 0


def effective_temperature(s: SamplingParams) -> float:
    return 1.0 if is_greedy(s) else float(s.temperature)


def validate_sampling(s: SamplingParams) -> None:
    """Raise ValueError naming the bad field (engines turn this into a 4xx / a clear error)."""
    if s.max_new_tokens < 1:
        raise ValueError(f"sampling.max_new_tokens must be >= 1 (got {s.max_new_tokens})")
    if s.temperature < 0:
        raise ValueError(f"sampling.temperature must be >= 0 (got {s.temperature})")
    if not 0 < s.top_p <= 1:
        raise ValueError(f"sampling.top_p must be in (0, 1] (got {s.top_p})")
    if s.top_k == 0 or s.top_k < -1:
        raise ValueError(f"sampling.top_k must be -1 (disabled) or >= 1 (got {s.top_k})")
    if any(not isinstance(x, str) or not x for x in s.stop):
        raise ValueError(f"sampling.stop must be non-empty strings (got {s.stop!r})")


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / T) gathered at `tokens` (logits [..., V], tokens [...]); the convention above."""
    lp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return lp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def truncate_logits(scaled: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) everything outside the top-k and the top-p nucleus of one row of scaled logits [V]."""
    out = scaled
    if top_k > 0 and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k).values[-1]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(out, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token is always kept)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop[0] = False
        mask = torch.zeros_like(drop).scatter(0, idx, drop)
        out = out.masked_fill(mask, float("-inf"))
    return out


def sample_token(
    logits: torch.Tensor, s: SamplingParams, generator: torch.Generator | None
) -> tuple[int, float]:
    """Choose the next token from one row of logits [V]; returns (token, behaviour logprob)."""
    logits = logits.float()
    if is_greedy(s):
        tok = int(torch.argmax(logits))
        return tok, float(torch.log_softmax(logits, -1)[tok])
    scaled = logits / float(s.temperature)
    logp = torch.log_softmax(scaled, -1)
    probs = torch.softmax(truncate_logits(scaled, s.top_k, s.top_p), -1)
    # the generator lives on the CPU so results do not depend on the device or on the rest of the batch
    tok = int(torch.multinomial(probs.cpu(), 1, generator=generator))
    return tok, float(logp[tok])


def find_stop(text: str, stops: list[str]) -> tuple[str, int] | None:
    """The stop string that occurs earliest in `text` and the index just past it, or None."""
    best: tuple[str, int] | None = None
    for st in stops:
        i = text.find(st)
        if i >= 0 and (best is None or i + len(st) < best[1]):
            best = (st, i + len(st))
    return best


def sampling_from_dict(d: dict[str, Any]) -> SamplingParams:
    return SamplingParams(**{k: v for k, v in d.items() if k in SamplingParams.__dataclass_fields__})
