"""KV cache of finished requests, reused by later requests whose prompt starts with the same tokens.

An agent's next call extends its previous call token for token (prompt + output + tool result), so without this
every turn prefills the whole history again: at three turns of ~300, ~800 and ~840 prompt tokens that is 2.4x the
tokens a cache hit leaves to prefill. vLLM (automatic prefix caching) and SGLang (radix cache) do the same on GPU.

Entries hold one sequence's keys and values per layer ([1, kv_heads, n, head_dim], cloned out of the batch) for
the tokens they cover, under one weight version: the engine clears the cache when its weights change, so a hit
never mixes KV computed by two versions (the per-token versions a request reports stay exact). The cache is
bounded by the tokens it holds (least recently used entries go first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class CachedPrefix:
    tokens: np.ndarray  # the token ids the KV covers
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [1, heads, n, dim]


@dataclass
class PrefixHit:
    length: int  # tokens of the prompt the KV covers (at least 1 prompt token is left to prefill)
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # truncated to `length`


class PrefixCache:
    """LRU of CachedPrefix entries, at most `max_tokens` tokens in all; `min_tokens`: shorter matches are not
    worth a prefill of their own and count as misses."""

    def __init__(self, max_tokens: int, min_tokens: int = 16):
        self.max_tokens = max_tokens
        self.min_tokens = max(1, min_tokens)
        self._entries: OrderedDict[int, CachedPrefix] = OrderedDict()
        self._next_id = 0
        self.tokens = 0
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0

    def put(self, tokens: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        n = len(tokens)
        if n < self.min_tokens or n > self.max_tokens:
            return
        self._entries[self._next_id] = CachedPrefix(np.asarray(tokens, dtype=np.int64), layers)
        self._next_id += 1
        self.tokens += n
        while self.tokens > self.max_tokens:
            _, old = self._entries.popitem(last=False)
            self.tokens -= len(old.tokens)

    def take(self, prompt: list[int]) -> PrefixHit | None:
        """The longest cached prefix of `prompt` (leaving its last token to prefill), or None. An entry the prompt
        extends whole is removed: the request that extends it will store the longer sequence when it finishes."""
        p = np.asarray(prompt, dtype=np.int64)
        best_key, best_len = None, 0
        for key, e in self._entries.items():
            m = min(len(e.tokens), len(p) - 1)
            if m <= best_len:
                continue
            diff = np.flatnonzero(e.tokens[:m] != p[:m])
            n = int(diff[0]) if len(diff) else m
            if n > best_len:
                best_key, best_len = key, n
        if best_key is None or best_len < self.min_tokens:
            self.misses += 1
            return None
        e = self._entries[best_key]
        if best_len == len(e.tokens):
            del self._entries[best_key]
            self.tokens -= len(e.tokens)
            layers = e.layers
        else:
            self._entries.move_to_end(best_key)
            layers = [(k[:, :, :best_len], v[:, :, :best_len]) for k, v in e.layers]
        self.hits += 1
        self.reused_tokens += best_len
        return PrefixHit(best_len, layers)

    def stats(self) -> dict[str, Any]:
        return {
            "entries": len(self._entries),
            "tokens": self.tokens,
            "hits": self.hits,
            "misses": self.misses,
            "reused_tokens": self.reused_tokens,
        }
