"""QA synthesis: the prompt-based agent that grows hard, verified multi-hop questions (paper §3.2.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section
from .llm import EngineConfig


class SynthConfig(Section):
    enabled: bool = Field(
        False,
        description="Run the `synth` stage in the DAG (writes records, a training file and statistics).",
    )
    seeds: Literal["pages", "qa", "both"] = Field(
        "both",
        description="Where seeds come from. 'pages': a random Wikipedia page of the local corpus and its links "
        "(the released code); 'qa': seed QA with supporting statements (the paper); 'both': half each.",
    )
    num_seeds: int = Field(8192, ge=1, description="Seeds to grow (released code: 8192 tasks).")
    qa_file: str = Field(
        "ASearcher-Base-35k.jsonl",
        description="Seed QA for seeds=qa|both: a file of the ASearcher-train-data release, or a path to a JSONL "
        "of {question, answer, statements?} or a HotpotQA/MuSiQue-style JSON with supporting facts. Rows "
        "without statements get them from the retrieval server (passages that state the answer).",
    )
    links_file: str | None = Field(
        None,
        description="Page link graph (the Local-Knowledge release's wikilinks.jsonl). null: that file when the "
        "release has it, else links derived from the pages (titles of other pages mentioned in a page).",
    )
    max_turns: int = Field(16, ge=1, description="Action turns per seed, turn 0 (verify the seed) included.")
    n_direct: int = Field(
        8, ge=1, description="No-tool answers per variant for the difficulty check (paper: 8)."
    )
    direct_temperature: float = Field(0.6, ge=0, description="Sampling temperature of the no-tool answers.")
    direct_max_new_tokens: int = Field(
        16384,
        ge=1,
        description="Token budget of one no-tool answer. A reasoning model thinks first: an answer cut off by this "
        "budget counts as wrong and makes the question look harder than it is (released code: 32k - prompt).",
    )
    max_variants_per_seed: int = Field(
        3, ge=1, description="Tool-needing variants kept per seed for the training file (paper: 3)."
    )
    max_in_flight: int = Field(128, ge=1, description="Seeds grown concurrently (released code: 128).")
    max_retries: int = Field(
        2,
        ge=0,
        description="Retries of a call whose reply is malformed (no JSON, wrong keys) before rejecting.",
    )
    page_max_chars: int = Field(50000, ge=100, description="Page text shown to the instruct model.")
    max_points: int = Field(20, ge=1, description="Information points extracted per page.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature of every other call.")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(
        16384, ge=1, description="Token budget of a reasoning-model call (it thinks before its JSON)."
    )
    instruct_max_new_tokens: int = Field(2048, ge=1, description="Token budget of an instruct-model call.")
    support_topk: int = Field(
        5, ge=1, description="Passages searched per seed question when a seed QA has no statements."
    )
    reasoner: EngineConfig | None = Field(
        None,
        description="The reasoning model that proposes, verifies and answers without tools (paper: QwQ-32B). "
        "null: the `engine` section.",
    )
    instruct: EngineConfig | None = Field(
        None,
        description="The instruct model that summarises pages, extracts information points and judges answers "
        "(paper: Qwen2.5-72B-Instruct). null: the same engine as the reasoner.",
    )
    reasoner_concurrency: int = Field(64, ge=1, description="Reasoning-model calls in flight at once.")
    instruct_concurrency: int = Field(64, ge=1, description="Instruct-model calls in flight at once.")
    judge_prompt: str = Field(
        "judge.txt", description="Prompt of the answer judge (a file in asearcher/eval/prompts/ or a path)."
    )
