"""Packing, advantages and the decoupled PPO loss, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from asearcher.agent.trajectory import ToolCall
from asearcher.config import RLConfig
from asearcher.rl.algo.advantages import assign_advantages, grpo_trajectory_advantages
from asearcher.rl.algo.loss import decoupled_ppo_loss, token_weights
from asearcher.rl.algo.packing import PackStats, pack_trajectory
from asearcher.rl.algo.batching import build_sequences, split_microbatches, split_minibatches
from asearcher.rl.algo.types import TrainSequence
from tests.rl.support import group, llm, traj

# ---- packing ------------------------------------------------------------------------------------------------------


def test_pack_appends_continuations_and_opens_new_sequences():
    P, O1, X, O2, Y, O3, Z, O4 = [10, 11], [12, 13], [14], [15], [16, 17], [18], [19], [20, 21]
    calls = [
        llm(P, O1, [-0.1, -0.2], [3, 3]),
        ToolCall(tool="search", argument="q", ok=True),
        llm(P + O1 + X, O2, [-0.3], [4]),
        llm(P + O1 + X + O2 + Y, O3, [-0.4], [5]),
        llm(P + O1 + Z, O4, [-0.5, -0.6], [5, 6]),  # prompt rebuilt (e.g. a page replaced by a stub)
    ]
    st = PackStats()
    seqs = pack_trajectory(traj("q1", calls), 0.75, traj_index=7, stats=st)
    assert len(seqs) == 2
    a, b = seqs
    assert a.input_ids == P + O1 + X + O2 + Y + O3
    assert a.loss_mask == [0, 0, 1, 1, 0, 1, 0, 0, 1]
    assert a.behav_logprobs == [0, 0, -0.1, -0.2, 0, -0.3, 0, 0, -0.4]
    assert a.versions == [-1, -1, 3, 3, -1, 4, -1, -1, 5]
    assert b.input_ids == P + O1 + Z + O4 and b.loss_mask == [0, 0, 0, 0, 0, 1, 1]
    assert b.versions[-2:] == [5, 6] and b.behav_logprobs[-2:] == [-0.5, -0.6]
    for s in seqs:
        assert s.reward == 0.75 and s.qid == "q1" and s.traj_index == 7 and s.n_traj_tokens == 6
        assert len(s.input_ids) == len(s.loss_mask) == len(s.behav_logprobs) == len(s.versions)
    assert (
        st.sequences == 2 and st.appended_calls == 2 and st.trained_tokens == 6 and st.truncated_tokens == 0
    )


def test_pack_respects_the_token_cap():
    P = [10, 11, 12]
    calls = [
        llm(P, [13, 14, 15, 16, 17]),
        llm([10, 11, 20], [21, 22]),
        llm(P + [13, 14, 15, 16, 17, 18], [19]),
    ]
    # call 0 overflows (8 > 7): it keeps its prompt and the outputs that fit; call 2's prompt alone fills the cap
    st = PackStats()
    seqs = pack_trajectory(traj("q", calls), 1.0, max_tokens=7, stats=st)
    assert [s.input_ids for s in seqs] == [P + [13, 14, 15, 16], [10, 11, 20, 21, 22]]
    assert st.skipped_calls == [2] and st.truncated_tokens == 2 and st.trained_tokens == 6
    # a call longer than the cap keeps its prompt and the first outputs; the rest is counted, not hidden
    st = PackStats()
    seqs = pack_trajectory(traj("q", [llm(P, [13, 14, 15, 16])]), 1.0, max_tokens=5, stats=st)
    assert seqs[0].input_ids == P + [13, 14] and st.truncated_tokens == 2
    st = PackStats()
    assert pack_trajectory(traj("q", [llm(P, [13])]), 1.0, max_tokens=3, stats=st) == []
    assert st.skipped_calls == [0] and st.truncated_tokens == 1


def test_pack_rejects_misaligned_records():
    bad = llm([1, 2], [3, 4], [-0.1], [0, 0])
    with pytest.raises(ValueError, match="output_logprobs has 1"):
        pack_trajectory(traj("q", [bad]), 0.0)


# ---- advantages -----------------------------------------------------------------------------------------------------


def _seq(n_loss: int, qid="q", t=0) -> TrainSequence:
    return TrainSequence(
        input_ids=[1] * (n_loss + 1),
        loss_mask=[0] + [1] * n_loss,
        behav_logprobs=[0.0] * (n_loss + 1),
        versions=[-1] * (n_loss + 1),
        reward=0.0,
        qid=qid,
        traj_index=t,
        n_traj_tokens=n_loss,
    )


def test_areal_advantages_hand_computed():
    cfg = RLConfig()  # bias -0.5, scale 10, clip 20
    # group A rewards [1, 0] -> centred [.5, -.5] -> [0, -10]; group B [0.6, 0] -> [.3, -.3] -> [-2, -8]
    seqs = [_seq(2), _seq(2), _seq(1), _seq(3)]
    assign_advantages(seqs, [[1.0, 0.0], [0.6, 0.0]], [(0, 0), (0, 1), (1, 0), (1, 1)], cfg)
    raw, n = [0.0, -10.0, -2.0, -8.0], [2, 2, 1, 3]
    mean = -46 / 8  # token-weighted
    std = math.sqrt(396 / 8 - mean**2)  # population std over tokens
    for s, r in zip(seqs, raw, strict=True):
        assert s.advantage == pytest.approx((r - mean) / (std + 1e-5))
    # token-weighted: zero mean, unit variance over tokens
    assert sum(k * s.advantage for k, s in zip(n, seqs, strict=True)) == pytest.approx(0.0, abs=1e-9)


def test_areal_clips_before_normalising():
    cfg = RLConfig(reward_clip=20.0)
    from asearcher.rl.algo.advantages import areal_trajectory_advantages

    assert areal_trajectory_advantages([3.0, -3.0], cfg) == [20.0, -20.0]  # (3-0.5)*10=25 -> 20; -35 -> -20
    assert areal_trajectory_advantages([0.4, 0.4], cfg) == [-5.0, -5.0]


def test_grpo_advantages_hand_computed():
    cfg = RLConfig(advantage="grpo")
    assert grpo_trajectory_advantages([2.0, 0.0, 1.0], cfg) == pytest.approx([1.0, -1.0, 0.0], abs=1e-5)
    assert grpo_trajectory_advantages([1.0, 0.0], cfg) == pytest.approx(
        [0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)], abs=1e-5
    )  # sample std
    assert grpo_trajectory_advantages([0.3, 0.3], cfg) == [0.0, 0.0]
    assert grpo_trajectory_advantages([1.0], cfg) == [0.0]
    seqs = [_seq(2), _seq(5), _seq(1)]
    assign_advantages(seqs, [[2.0, 0.0, 1.0]], [(0, 0), (0, 1), (0, 2)], cfg)  # no global token norm
    assert [s.advantage for s in seqs] == pytest.approx([1.0, -1.0, 0.0], abs=1e-5)


def test_token_weights_areal_vs_grpo():
    a, b, c = _seq(2, t=0), _seq(6, t=1), _seq(2, t=1)
    b.n_traj_tokens = c.n_traj_tokens = 8  # trajectory 1 has two sequences
    assert token_weights([a, b, c], "areal") == pytest.approx([0.1, 0.1, 0.1])
    # 2 trajectories: weight = 1 / (2 * tokens of the trajectory)
    assert token_weights([a, b, c], "grpo") == pytest.approx([1 / 4, 1 / 16, 1 / 16])
    with pytest.raises(ValueError):
        token_weights([a], "nope")


def test_build_sequences_and_splits():
    items = [(traj("q0", [llm([2, 3], [4, 5])], idx=i), r) for i, r in enumerate([1.0, 0.0, 0.0])]
    seqs, info = build_sequences([group("q0", items)], RLConfig())
    assert len(seqs) == 3 and info["n_trajs"] == 3 and info["reward_mean"] == pytest.approx(1 / 3)
    assert [s.traj_index for s in seqs] == [0, 1, 2] and seqs[0].advantage > 0 > seqs[1].advantage
    mbs = split_minibatches(seqs, 2)
    assert [len(m) for m in mbs] == [2, 1]
    lens = [5, 1, 3, 3]
    mbs = split_microbatches(lens, 6, length=lambda n: n)
    assert sorted(i for m in mbs for i in m) == [0, 1, 2, 3]
    assert all(max(lens[i] for i in m) * len(m) <= 6 or len(m) == 1 for m in mbs)


# ---- loss ---------------------------------------------------------------------------------------------------------


def _policy(T=4, V=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(T, V, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (T,), generator=g)
    logp = torch.log_softmax(theta, -1).gather(-1, tokens[:, None]).squeeze(-1)
    return theta, tokens, logp


def _loss(logp, prox, behav, adv, mask=None, w=None, **kw):
    T = logp.shape[0]
    mask = torch.ones(T) if mask is None else mask
    w = torch.full((T,), 1.0 / T) if w is None else w
    kw.setdefault("eps_clip", 0.4)
    kw.setdefault("behav_imp_weight_cap", 5.0)
    return decoupled_ppo_loss(logp, prox, behav, adv, mask, w, **kw)


def test_gradient_equals_reinforce_at_ratio_one():
    theta, tokens, logp = _policy()
    adv = torch.tensor([1.5, -0.5, 2.0, -1.0])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    w = torch.tensor([0.25, 0.5, 0.3, 0.125])
    loss, st = _loss(logp, logp.detach(), logp.detach(), adv, mask, w)
    loss.backward()
    # d/dtheta_t of -w_t A_t log softmax(theta_t)[y_t] = -w_t A_t (onehot(y_t) - softmax(theta_t))
    p = torch.softmax(theta.detach(), -1)
    onehot = torch.nn.functional.one_hot(tokens, 5).float()
    expected = -(mask * w * adv)[:, None] * (onehot - p)
    assert torch.allclose(theta.grad, expected, atol=1e-6)
    assert st.n_tokens == 3 and st.clipped == 0 and st.behav_masked == 0
    assert st.ratio == pytest.approx(3.0)


def test_behaviour_weight_scales_and_cap_masks():
    theta, tokens, logp = _policy()
    adv = torch.ones(4)
    prox = logp.detach()
    # token 0: w = e^1 (kept, scales the gradient); token 1: w = e^2 = 7.4 > 5 (masked); others w = 1
    behav = prox - torch.tensor([1.0, 2.0, 0.0, 0.0])
    loss, st = _loss(logp, prox, behav, adv)
    loss.backward()
    p = torch.softmax(theta.detach(), -1)
    onehot = torch.nn.functional.one_hot(tokens, 5).float()
    scale = torch.tensor([math.e, 0.0, 1.0, 1.0]) * 0.25
    assert torch.allclose(theta.grad, -scale[:, None] * (onehot - p), atol=1e-6)
    assert st.behav_masked == 1 and st.n_tokens == 4  # masked tokens stay in the denominator
    # no cap: token 1 is kept with its large weight
    theta.grad = None
    _, _, logp2 = _policy()
    _, st = _loss(logp2, prox, behav, adv, behav_imp_weight_cap=None)
    assert st.behav_masked == 0 and st.behav_weight == pytest.approx(math.e + math.e**2 + 2)


def test_clipping_activates_outside_the_trust_region():
    theta, tokens, logp = _policy(T=4)
    # ratio = exp(logp - prox): 1.5, 1.5, 0.5, 0.5 ; eps 0.4 -> region [0.6, 1.4]
    prox = logp.detach() - torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, st = _loss(logp, prox, prox, adv)
    loss.backward()
    # clipped (zero gradient): A>0 with ratio above 1+eps, A<0 with ratio below 1-eps
    assert st.clipped == 2
    g = theta.grad.abs().sum(-1)
    assert g[0] == 0 and g[3] == 0 and g[1] > 0 and g[2] > 0
    # inside the region nothing is clipped
    theta2, _, logp2 = _policy(T=4)
    prox2 = logp2.detach() - math.log(1.3)
    _, st2 = _loss(logp2, prox2, prox2, adv)
    assert st2.clipped == 0


def test_plain_ppo_uses_behaviour_logprobs_directly():
    theta, tokens, logp = _policy()
    adv = torch.ones(4)
    behav = logp.detach() - 3.0  # weight e^3 would be masked in the decoupled loss
    loss, st = _loss(logp, None, behav, adv, use_decoupled=False)
    assert st.behav_masked == 0
    assert st.clipped == 4  # ratio e^3 > 1.4 with A > 0
    with pytest.raises(ValueError, match="proximal"):
        _loss(logp, None, behav, adv)


def test_kl_penalty_pulls_towards_the_reference():
    theta, tokens, logp = _policy()
    zero = torch.zeros(4)
    loss, st = _loss(logp, logp.detach(), logp.detach(), zero, kl_coef=0.5, ref_logp=logp.detach())
    assert float(loss.detach()) == pytest.approx(0.0) and st.kl == pytest.approx(0.0)
    loss, st = _loss(logp, logp.detach(), logp.detach(), zero, kl_coef=0.5, ref_logp=logp.detach() + 0.3)
    assert float(loss.detach()) > 0 and st.kl > 0
    loss.backward()
    # ref assigns more mass to the taken tokens, so descending the KL raises logp: grad along -(onehot - p)
    p = torch.softmax(theta.detach(), -1)
    onehot = torch.nn.functional.one_hot(tokens, 5).float()
    assert ((theta.grad * (onehot - p)).sum(-1) < 0).all()
