"""Rows of a batched KV cache (a transformers DynamicCache) for the in-process engine: build, drop, append and copy
out rows. Rows are left-padded: a row's tokens sit at the right end of the sequence axis and the attention mask
marks them, so every row's next token goes in the same column."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def left_padded(
    seqs: list[list[int]], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, attention mask and per-row position ids of `seqs`, left-padded to the longest."""
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        ids[i, width - len(x) :] = torch.tensor(x)
        attn[i, width - len(x) :] = 1
    ids, attn = ids.to(device), attn.to(device)
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)


def mergeable(cache: Any) -> bool:
    """Plain full-attention layers only (sliding-window or other layer kinds are re-prefilled instead)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def select_rows(cache: Any, attn: torch.Tensor, idx: list[int]) -> tuple[Any, torch.Tensor]:
    """Keep rows `idx` (in this order) of the cache and the attention mask."""
    t = torch.tensor(idx, device=attn.device)
    cache.batch_select_indices(t)
    return cache, attn[t]


def merge_rows(
    cache: Any, attn: torch.Tensor, cache_b: Any, attn_b: torch.Tensor
) -> tuple[Any, torch.Tensor]:
    """Append cache_b's rows to cache, left-padding the shorter one's sequence axis (masked out)."""
    wa, wb = attn.shape[1], attn_b.shape[1]
    width = max(wa, wb)

    def pad(t: torch.Tensor, w: int) -> torch.Tensor:  # [B, heads, seq, dim]: pad seq on the left
        return F.pad(t, (0, 0, width - w, 0)) if w < width else t

    for la, lb in zip(cache.layers, cache_b.layers, strict=True):
        la.keys = torch.cat([pad(la.keys, wa), pad(lb.keys, wb)], dim=0)
        la.values = torch.cat([pad(la.values, wa), pad(lb.values, wb)], dim=0)
    attn = torch.cat([F.pad(attn, (width - wa, 0)), F.pad(attn_b, (width - wb, 0))], dim=0)
    return cache, attn


def row_layers(cache: Any, row: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of one row's last `n` positions, per layer (keys, values), each [1, heads, n, dim]. Copies: a view
    would keep the whole batch's tensors alive."""
    return [
        (la.keys[row : row + 1, :, -n:].clone(), la.values[row : row + 1, :, -n:].clone())
        for la in cache.layers
    ]


def cache_of(config: Any, layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    """A DynamicCache for `config`, holding `layers` (per layer keys and values) when given."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for layer, (k, v) in enumerate(layers or []):
        cache.update(k, v, layer)
    return cache
