"""Data passed between rollout workers, the controller and the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asearcher.agent.trajectory import Trajectory


@dataclass
class ScoredTrajectory:
    trajectory: Trajectory
    reward: float  # raw score in the paper's sense (e.g. format x F1, or -0.5 invalid), before centering
    reward_info: dict[str, Any] = field(default_factory=dict)  # e.g. {"f1":..., "format":..., "invalid":...}


@dataclass
class Group:
    """All n trajectories of one question; the unit that advantages are computed over."""

    qid: str
    question: str
    answers: list[str]
    samples: list[ScoredTrajectory]
    submit_version: int  # trainer version when the question was admitted
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.samples]

    def all_equal(self, tol: float = 1e-9) -> bool:
        r = self.rewards
        return max(r) - min(r) <= tol

    def needs_tool_calls(self, n: int) -> bool:
        """Stage-2 curriculum test: the question was solved (some reward > 0), and no trajectory that solved it
        used fewer than n tool calls (searches + page accesses)."""
        solved = [len(s.trajectory.tool_calls) for s in self.samples if s.reward > 0]
        return bool(solved) and min(solved) >= n


@dataclass
class TrainSequence:
    """One packed token sequence for the trainer, built from recorded LLM calls (token-in, token-out)."""

    input_ids: list[int]
    loss_mask: list[int]  # 1 on model-generated tokens only
    behav_logprobs: list[float]  # engine logprobs at generation time (0 on prompt tokens)
    versions: list[int]  # policy version per token (-1 on prompt tokens)
    reward: float  # the trajectory's raw reward
    advantage: float = 0.0  # per-token advantage is broadcast from this trajectory-level value
    qid: str = ""
    traj_index: int = 0
    n_traj_tokens: int = 0  # generated tokens in the whole trajectory (for per-trajectory normalisation)
