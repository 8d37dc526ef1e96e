"""Where the upstream releases come from and how much of them the run takes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class DataConfig(Section):
    source: Literal["mirror", "hub", "auto"] = Field(
        "mirror",
        description="'hub': download the releases from the Hugging Face hub; 'mirror': copy them from a local "
        "directory laid out like the releases (data.mirror or $ASEARCHER_MIRROR); 'auto': the mirror when one "
        "is configured, else the hub.",
    )
    mirror: str | None = Field(
        None, description="Local mirror directory; falls back to $ASEARCHER_MIRROR when null."
    )
    corpus_repo: str = Field(
        "inclusionAI/ASearcher-Local-Knowledge", description="Hub dataset of the corpus."
    )
    test_repo: str = Field("inclusionAI/ASearcher-test-data", description="Hub dataset of the benchmarks.")
    train_repo: str = Field(
        "inclusionAI/ASearcher-train-data", description="Hub dataset of the RL training QA."
    )
    corpus_limit: int | None = Field(
        None,
        ge=1,
        description="Take only the first N passages of wiki_corpus.jsonl (streamed; never the whole 23 GB). "
        "null = everything.",
    )
    pages_limit: int | None = Field(
        None, ge=1, description="Take only the first N pages of wiki_webpages.jsonl. null = everything."
    )
    revision: str | None = Field(None, description="Hub revision (commit or tag) to pin; null = main.")
    include_wikilinks: bool = Field(
        False,
        description="Also fetch wikilinks.jsonl of ASearcher-Local-Knowledge (bounded by pages_limit): the page "
        "link graph the synth stage walks (without it, links are derived from the pages' text).",
    )
