"""make_agent: the agent for an AgentConfig, by its `kind`."""

from __future__ import annotations

from typing import Any

from asearcher.agent.asearcher_agent import AsearcherAgent
from asearcher.agent.base import Agent
from asearcher.agent.direct_agent import DirectAgent
from asearcher.agent.reasoning_agent import ReasoningAgent
from asearcher.agent.search_r1_agent import SearchR1Agent
from asearcher.config.agent import AgentConfig
from asearcher.utils.registry import Registry, UnknownNameError


class UnknownAgentError(UnknownNameError, ValueError):
    pass


AGENTS: Registry[type[Agent]] = Registry("agent", key="agent.kind", error=UnknownAgentError)
for _cls in (AsearcherAgent, ReasoningAgent, SearchR1Agent, DirectAgent):
    AGENTS.register(_cls.name, _cls)


def agent_class(kind: str) -> type[Agent]:
    return AGENTS.get(kind)


def make_agent(cfg: AgentConfig, tokenizer: Any, *, kind: str | None = None) -> Agent:
    """Build the agent `kind` (default cfg.kind) with its templates loaded and checked."""
    cls = agent_class(kind or cfg.kind)
    return cls(cfg, tokenizer)  # type: ignore[call-arg]
