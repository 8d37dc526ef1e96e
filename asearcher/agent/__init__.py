"""Search agents: the base-model ASearcher agent, the prompt-based reasoning agent and Search-R1.

`make_agent(cfg.agent, tokenizer)` builds one; see docs/agents.md for the protocols.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # lazy, so importing asearcher.agent.trajectory stays light
    if name in ("make_agent", "AGENTS"):
        from asearcher.agent import registry

        return getattr(registry, name)
    raise AttributeError(name)
