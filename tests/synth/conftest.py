"""Synthesis fixtures: a small linked Wikipedia (pages that mention each other's titles) and an agent builder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asearcher.config import load_config
from .wiki import PAGES, url


@pytest.fixture
def wiki_pages(tmp_path: Path) -> Path:
    p = tmp_path / "wiki_webpages.jsonl"
    p.write_text(
        "".join(json.dumps({"url": url(t), "contents": f"{t}\n\n{c}"}) + "\n" for t, c in PAGES.items())
    )
    return p


@pytest.fixture
def synth_cfg():
    def make(**synth):
        base = {"seeds": "pages", "num_seeds": 2, "max_turns": 4, "n_direct": 3, "max_retries": 1}
        base.update(synth)
        return load_config(None, [f"synth.{k}={json.dumps(v)}" for k, v in base.items()])

    return make


@pytest.fixture
def make_agent(wiki_pages):
    """An agent over the small linked Wikipedia with one scripted engine in both roles."""
    from asearcher.eval.judge import Judge, chat_fn_for
    from asearcher.llm.engine import SamplingParams
    from asearcher.retrieval.stores import PageStore
    from asearcher.synth.agent import SynthesisAgent
    from asearcher.synth.links import DerivedLinks
    from asearcher.synth.roles import Role, load_prompts

    def make(engine, cfg, retrieval=None):
        prompts = load_prompts()
        s = cfg.synth
        sampling = SamplingParams(max_new_tokens=64, temperature=s.temperature, top_p=s.top_p)
        reasoner = Role("reasoner", chat_fn_for(engine), prompts, sampling=sampling, concurrency=8,
                        max_retries=s.max_retries)  # fmt: skip
        instruct = Role("instruct", chat_fn_for(engine), prompts, sampling=sampling, concurrency=8,
                        max_retries=s.max_retries)  # fmt: skip
        judge = Judge(instruct.chat_fn("judge"), max_retries=s.max_retries)
        pages = PageStore(wiki_pages)
        return SynthesisAgent(reasoner, instruct, judge, DerivedLinks(pages), pages, s, retrieval=retrieval)

    return make
