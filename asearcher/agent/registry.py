"""make_agent: the agent for an AgentConfig, by its `kind`."""

from __future__ import annotations

import difflib
from typing import Any

from asearcher.agent.asearcher_agent import AsearcherAgent
from asearcher.agent.base import Agent
from asearcher.agent.reasoning_agent import ReasoningAgent
from asearcher.agent.search_r1_agent import SearchR1Agent
from asearcher.config.agent import AgentConfig
from asearcher.errors import UserFacingError

AGENTS: dict[str, type[Agent]] = {
    AsearcherAgent.name: AsearcherAgent,
    ReasoningAgent.name: ReasoningAgent,
    SearchR1Agent.name: SearchR1Agent,
}


class UnknownAgentError(UserFacingError, ValueError):
    pass


def agent_class(kind: str) -> type[Agent]:
    try:
        return AGENTS[kind]
    except KeyError:
        close = difflib.get_close_matches(kind, list(AGENTS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownAgentError(
            f"agent.kind: unknown agent {kind!r}; known agents: {', '.join(AGENTS)}.{hint}"
        ) from None


def make_agent(cfg: AgentConfig, tokenizer: Any, *, kind: str | None = None) -> Agent:
    """Build the agent `kind` (default cfg.kind) with its templates loaded and checked."""
    cls = agent_class(kind or cfg.kind)
    return cls(cfg, tokenizer)  # type: ignore[call-arg]
