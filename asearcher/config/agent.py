"""Search agents."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section

#: agent kinds that call no tool: they are evaluated without a retrieval server or web keys, and their result
#: paths name no search backend (asearcher.tools.factory.setting_label)
TOOL_FREE_KINDS = frozenset({"direct"})


class AgentConfig(Section):
    kind: Literal["asearcher", "asearcher-reasoning", "search-r1", "direct"] = Field(
        "asearcher",
        description="'asearcher': base-model agent (Qwen2.5-7B/14B style); 'asearcher-reasoning': prompt-based "
        "LRM agent (QwQ-32B style); 'search-r1': the Search-R1 baseline; 'direct': direct generation, one call "
        "without tools (the paper's 'Direct' baselines).",
    )
    template: str | None = Field(
        None,
        description="Prompt template name (a file in asearcher/agent/prompts/) or a path to your own file; "
        "null = the agent's default.",
    )
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="Per-role template overrides (role -> bundled name or path), e.g. {read_page: my.txt}. "
        "Roles: asearcher: prompt, note_invalid, note_valid, invalid; asearcher-reasoning: act, read_page, "
        "read_search, answer, invalid; search-r1: prompt, invalid; direct: prompt. `template` sets the first role.",
    )
    max_turns: int = Field(32, ge=1, description="Most LLM generations per trajectory (paper: 32; QwQ: 128).")
    max_new_tokens: int = Field(1024, ge=1, description="Max tokens per LLM call.")
    max_context_tokens: int = Field(
        8000, ge=64, description="Context of one call: prompt + generated tokens never exceed this."
    )
    call_budget: Literal["auto", "fixed", "context"] = Field(
        "auto",
        description="Tokens one LLM call may generate. 'fixed': max_new_tokens, and a call whose prompt leaves "
        "less room ends the trajectory (upstream base agent: 1024/2048 in 8000/28000). 'context': what the "
        "context leaves, min(max_new_tokens, max_context_tokens - prompt) (upstream QwQ agent: 31000 - prompt). "
        "'auto': the agent's upstream rule ('context' for asearcher-reasoning, 'fixed' for the others).",
    )
    min_call_tokens: int = Field(
        32, ge=1, description="'context' budget: a call left fewer tokens than this ends the trajectory."
    )
    topk: int = Field(5, ge=1, description="Search results shown to the agent.")
    doc_max_chars: int = Field(5000, ge=1, description="Each search document is cut to this many characters.")
    page_max_chars: int = Field(250000, ge=1, description="Accessed pages are cut to this many characters.")
    page_chunk_chars: int = Field(25000, ge=1, description="Page chunk size read per summary turn.")
    page_stub_chars: int = Field(
        100, ge=0, description="Characters of each page chunk kept in the history after it was read."
    )
    allow_access: bool = Field(
        True, description="Offer the <access> tool (upstream training used search only)."
    )
    history_chars: int = Field(25000, ge=1000, description="Reasoning agent: history window in characters.")
    min_searches: int = Field(
        0, ge=0, description="Reasoning agent: searches required before an answer counts."
    )
    force_answer_turns: int | None = Field(
        None,
        ge=1,
        description="Reasoning agent: after this many acts, force the answer phase (upstream: 32).",
    )
    answer_policy: Literal["min_searches", "answer_phase"] = Field(
        "min_searches",
        description="Reasoning agent: when an answer counts. 'min_searches': the act prompt always offers "
        "<answer>, and an answer counts after min_searches successful searches. 'answer_phase' (upstream QwQ "
        "agent): the act prompt offers only search/access until the answer phase, which starts after "
        "answer_phase_docs search-result blocks or force_answer_turns acts; earlier answers are set aside.",
    )
    answer_phase_docs: int = Field(
        20,
        ge=0,
        description="Reasoning agent, answer_phase policy: search-result blocks that open the answer phase.",
    )
    page_reading: Literal["all_chunks", "one_per_act"] = Field(
        "all_chunks",
        description="Reasoning agent: 'all_chunks' reads every chunk of an opened page before the next act; "
        "'one_per_act' (upstream) reads the first chunk at once and one more before each later act.",
    )
    valid_instruction_prob: float = Field(
        0.0, ge=0, le=1, description="Probability that the prompt says the question is valid (training: 0.3)."
    )
