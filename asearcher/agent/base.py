"""The agent interface: run one trajectory for one question with an engine and a tool backend."""

from __future__ import annotations

import abc
import random

from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import ToolBackend


class Agent(abc.ABC):
    #: registry name ("asearcher", "asearcher-reasoning", "search-r1")
    name: str
    #: sha256 of the prompt template text(s) this agent uses; stored with every result
    prompt_hash: str

    @abc.abstractmethod
    async def run(
        self,
        *,
        qid: str,
        question: str,
        answers: list[str],
        engine: InferenceEngine,
        tools: ToolBackend,
        sampling: SamplingParams,
        sample_idx: int = 0,
        rng: random.Random | None = None,
    ) -> Trajectory:
        """Run to an answer or a limit. Never raises on model output; tool failures become observations."""
