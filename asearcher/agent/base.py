"""The agent interface: run one trajectory for one question with an engine and a tool backend."""

from __future__ import annotations

import abc
import random
from collections.abc import Callable

from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import ToolBackend


class Agent(abc.ABC):
    #: registry name ("asearcher", "asearcher-reasoning", "search-r1")
    name: str
    #: sha256 of the prompt template text(s) this agent uses; stored with every result
    prompt_hash: str
    #: optional observer called with (trajectory, event) right after each LLM or tool call is recorded (e.g. the
    #: live printout of `asearcher ask`); it must not change the trajectory
    on_event: Callable[[Trajectory, LLMCall | ToolCall], None] | None = None

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
