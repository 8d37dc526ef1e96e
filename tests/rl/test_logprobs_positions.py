"""token_logprobs(positions=...): computing the vocabulary projection for the loss tokens alone gives the same
logprobs, entropies and gradients at those positions as the full computation (tiny random Qwen2)."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from asearcher.rl.algo import logprobs as lp_mod
from asearcher.rl.algo.logprobs import pad_batch, token_logprobs


def _model(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return Qwen2ForCausalLM(cfg).float()


def _batch():
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (23, 9, 17)]
    ids, att = pad_batch(rows)
    pos = torch.zeros(ids.shape, dtype=torch.bool)
    pos[0, 5:12] = True
    pos[1, 8] = True
    pos[2, 1:17] = True
    return ids, att, pos


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selected_positions_match_the_full_computation(temperature):
    model = _model()
    ids, att, pos = _batch()
    full_lp, full_ent = token_logprobs(model, ids, att, temperature, with_entropy=True)
    (-(full_lp * pos).sum()).backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    sel_lp, sel_ent = token_logprobs(model, ids, att, temperature, with_entropy=True, positions=pos)
    (-(sel_lp * pos).sum()).backward()
    torch.testing.assert_close(sel_lp[pos], full_lp[pos], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sel_ent[pos], full_ent[pos], rtol=1e-5, atol=1e-6)
    assert not sel_lp[~pos].any() and not sel_ent[~pos].any()  # 0 outside the asked positions
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, full_grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_an_unknown_architecture_takes_the_full_path_with_the_same_contract(monkeypatch):
    model = _model()
    ids, att, pos = _batch()
    monkeypatch.setattr(lp_mod, "_PLAIN_HEAD_TYPES", frozenset())
    calls = []
    model.register_forward_hook(lambda m, a, out: calls.append(out.logits.shape))
    lp, _ = token_logprobs(model, ids, att, 1.0, positions=pos)
    assert calls == [(3, ids.shape[1], 97)]  # the full logits were computed
    full, _ = token_logprobs(model, ids, att, 1.0)
    torch.testing.assert_close(lp[pos], full[pos])
    assert not lp[~pos].any()


def test_the_fast_path_does_not_project_every_position():
    model = _model()
    ids, att, pos = _batch()
    rows = []
    model.lm_head.register_forward_hook(lambda m, a, out: rows.append(a[0].shape))
    token_logprobs(model, ids, att, 1.0, positions=pos)
    assert rows == [(int(pos[:, 1:].sum()), 32)]
