"""Shared fixtures. Data comes from the release mirror named by $ASEARCHER_MIRROR (tests that need it skip without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Area fixtures live in tests/fixtures/<area>.py so each area owns its own file.
pytest_plugins = [
    "tests.fixtures.retrieval",
    "tests.fixtures.llm",
]

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _mirror() -> Path | None:
    env = os.environ.get("ASEARCHER_MIRROR")
    return Path(env) if env else None


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    m = _mirror()
    if m is None or not m.exists():
        pytest.skip("no release mirror: set ASEARCHER_MIRROR to a directory laid out like the releases")
    return m


@pytest.fixture(scope="session")
def shared_data_dir(mirror_dir: Path) -> Path:
    """The directory holding the mirror: extra real data beside it, such as HotpotQA gold titles."""
    return mirror_dir.parent


@pytest.fixture(scope="session")
def corpus_file(mirror_dir: Path) -> Path:
    return mirror_dir / "ASearcher-Local-Knowledge" / "wiki_corpus.jsonl"


@pytest.fixture(scope="session")
def pages_file(mirror_dir: Path) -> Path:
    return mirror_dir / "ASearcher-Local-Knowledge" / "wiki_webpages.jsonl"
