"""make_engine: each kind from its config section, and clear errors for bad settings."""

from __future__ import annotations

import asyncio

import pytest

from asearcher.config import EngineConfig
from asearcher.errors import UserFacingError
from asearcher.llm.factory import make_engine
from asearcher.llm.openai_engine import OpenAIEngine
from asearcher.llm.transformers_engine import TransformersEngine


def test_transformers_and_openai_kinds(tiny_model_dir):
    eng = make_engine(
        EngineConfig(kind="transformers", model=str(tiny_model_dir), device="cpu", max_batch_size=4)
    )
    try:
        assert isinstance(eng, TransformersEngine) and eng.max_batch_size == 4 and eng.version == 0
    finally:
        asyncio.run(eng.aclose())
    eng = make_engine(
        EngineConfig(kind="openai", model=str(tiny_model_dir), base_url="http://127.0.0.1:9/v1")
    )
    try:
        # a local model dir doubles as the tokenizer
        assert isinstance(eng, OpenAIEngine) and eng.tokenizer is not None
    finally:
        asyncio.run(eng.aclose())


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserFacingError, match="engine.base_url"):
        make_engine(EngineConfig(kind="openai", model="gpt-4o-mini"))
    with pytest.raises(UserFacingError, match="tiny-model"):
        make_engine(EngineConfig(kind="transformers", model=str(tmp_path / "missing")))
