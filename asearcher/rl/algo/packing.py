"""Trajectory -> training sequences, from the recorded LLM calls only (token-in, token-out).

The base agent rebuilds its prompt each turn (a page chunk is replaced by a short stub after its summary turn),
so a trajectory is not one contiguous token stream. Following the upstream "token concatenation" scheme, each
LLM call is appended to an existing sequence when the call's input_ids start with that sequence's tokens;
otherwise it opens a new sequence. Text is never re-tokenized: the trainer sees exactly the ids the engine saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from asearcher.agent.trajectory import LLMCall, Trajectory
from asearcher.rl.algo.types import TrainSequence

log = logging.getLogger(__name__)


@dataclass
class PackStats:
    calls: int = 0
    sequences: int = 0
    appended_calls: int = 0  # calls that extended an existing sequence
    output_tokens: int = 0  # generated tokens recorded in the trajectory
    trained_tokens: int = 0  # generated tokens that made it into a sequence (loss_mask == 1)
    truncated_tokens: int = 0  # generated tokens cut by the max-tokens cap
    truncated_calls: int = 0  # calls that lost some (not all) of their output to the cap
    skipped_calls: list[int] = field(default_factory=list)  # calls whose prompt alone reaches the cap

    def add(self, other: PackStats) -> None:
        self.calls += other.calls
        self.sequences += other.sequences
        self.appended_calls += other.appended_calls
        self.output_tokens += other.output_tokens
        self.trained_tokens += other.trained_tokens
        self.truncated_tokens += other.truncated_tokens
        self.truncated_calls += other.truncated_calls
        self.skipped_calls.extend(other.skipped_calls)


def _check_call(traj: Trajectory, i: int, c: LLMCall) -> None:
    n = len(c.output_ids)
    if len(c.output_logprobs) != n or len(c.output_versions) != n:
        raise ValueError(
            f"trajectory {traj.qid!r} (sample {traj.sample_idx}) LLM call {i}: output_ids has {n} tokens but "
            f"output_logprobs has {len(c.output_logprobs)} and output_versions {len(c.output_versions)}; "
            "the engine must record one logprob and one version per generated token"
        )


def pack_trajectory(
    traj: Trajectory,
    reward: float,
    *,
    max_tokens: int | None = None,
    traj_index: int = 0,
    stats: PackStats | None = None,
) -> list[TrainSequence]:
    """Pack the LLM calls of one trajectory into sequences (all carry the trajectory's scalar reward).

    max_tokens caps each sequence. Since a sequence always ends where its latest call's context + output ends,
    the cap applies per call: a call whose prompt + output overflows keeps its prompt and as many output tokens
    as fit (the rest are counted in `stats.truncated_tokens`; later calls no longer extend that sequence); a call
    whose prompt alone fills the cap is skipped (`stats.skipped_calls`).
    """
    st = PackStats()
    seqs: list[TrainSequence] = []
    for i, c in enumerate(traj.llm_calls):
        _check_call(traj, i, c)
        st.calls += 1
        st.output_tokens += len(c.output_ids)
        if not c.output_ids:
            continue
        inp = list(c.input_ids)
        target = None
        # Prefer the longest matching sequence (the most recent turn of this context chain).
        for s in sorted(seqs, key=lambda s: -len(s.input_ids)):
            n = len(s.input_ids)
            if n <= len(inp) and inp[:n] == s.input_ids:
                target = s
                break
        out = list(c.output_ids)
        lps = [float(x) for x in c.output_logprobs]
        vers = [int(v) for v in c.output_versions]
        # An appended sequence ends exactly where this call's context + output ends, so the cap is per call.
        if max_tokens is not None and len(inp) >= max_tokens:
            st.skipped_calls.append(i)
            st.truncated_tokens += len(out)
            log.warning(
                "trajectory %s: LLM call %d prompt has %d tokens >= cap %d; its %d output tokens are not trained",
                traj.qid,
                i,
                len(inp),
                max_tokens,
                len(out),
            )
            continue
        if max_tokens is not None and len(inp) + len(out) > max_tokens:
            keep = max_tokens - len(inp)
            st.truncated_tokens += len(out) - keep
            st.truncated_calls += 1
            out, lps, vers = out[:keep], lps[:keep], vers[:keep]
        if target is None:
            target = TrainSequence(
                input_ids=[],
                loss_mask=[],
                behav_logprobs=[],
                versions=[],
                reward=float(reward),
                qid=traj.qid,
                traj_index=traj_index,
            )
            seqs.append(target)
            new_prompt = inp
        else:
            st.appended_calls += 1
            new_prompt = inp[len(target.input_ids) :]
        target.input_ids += new_prompt + out
        target.loss_mask += [0] * len(new_prompt) + [1] * len(out)
        target.behav_logprobs += [0.0] * len(new_prompt) + lps
        target.versions += [-1] * len(new_prompt) + vers
        st.trained_tokens += len(out)
    n_traj = sum(sum(s.loss_mask) for s in seqs)
    for s in seqs:
        s.n_traj_tokens = n_traj
    st.sequences = len(seqs)
    if stats is not None:
        stats.add(st)
    return seqs
