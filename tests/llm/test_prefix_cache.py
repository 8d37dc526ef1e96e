"""PrefixCache: longest-prefix lookup, truncation, LRU bound by tokens."""

from __future__ import annotations

import torch

from asearcher.llm.prefix_cache import PrefixCache


def kv(n, layers=2, fill=0.0):
    return [(torch.full((1, 2, n, 4), fill + i), torch.full((1, 2, n, 4), -fill - i)) for i in range(layers)]


def test_longest_prefix_wins_and_whole_entries_are_consumed():
    c = PrefixCache(max_tokens=1000, min_tokens=4)
    c.put(list(range(10)), kv(10, fill=1))
    c.put(list(range(20)), kv(20, fill=2))
    hit = c.take(list(range(30)))
    assert hit.length == 20 and hit.layers[0][0][0, 0, 0, 0] == 2
    assert len(c) == 1 and c.tokens == 10  # the 20-token entry was extended whole: gone
    # a prompt that diverges inside the remaining entry reuses the common part only, and the entry stays
    hit = c.take(list(range(6)) + [99, 98, 97])
    assert hit.length == 6 and hit.layers[1][1].shape == (1, 2, 6, 4)
    assert len(c) == 1 and c.stats()["hits"] == 2 and c.stats()["reused_tokens"] == 26


def test_the_last_prompt_token_is_always_left_to_prefill_and_short_matches_miss():
    c = PrefixCache(max_tokens=1000, min_tokens=4)
    c.put(list(range(10)), kv(10))
    assert c.take(list(range(10))).length == 9  # same tokens: one is still fed to get the next logits
    c.put(list(range(10)), kv(10))
    assert c.take([0, 1, 2, 50, 60]) is None  # 3 common tokens < min_tokens
    assert c.stats()["misses"] == 1


def test_bounded_by_tokens_least_recently_used_first():
    c = PrefixCache(max_tokens=25, min_tokens=2)
    c.put([1] * 10, kv(10))
    c.put([2] * 10, kv(10))
    c.take([1] * 5 + [7])  # partial use: [1]*10 becomes the most recently used
    c.put([3] * 10, kv(10))  # 30 > 25: the least recently used ([2]*10) goes
    assert c.tokens == 20 and c.take([2] * 10 + [5]) is None
    assert c.take([3] * 11).length == 10
    c.put([4] * 30, kv(30))  # larger than the whole cache: not kept
    assert c.take([4] * 31) is None
    c.clear()
    assert len(c) == 0 and c.tokens == 0
