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


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu`-marked tests skip, all through this one hook, on a machine without CUDA (CI, laptops)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (marker: gpu)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _progress_switch_stays_in_its_test(monkeypatch):
    """`asearcher --no-progress` switches bars off through the environment (so child processes inherit it); a test
    that calls the CLI must not switch them off for the tests after it in the same worker."""
    for name in ("ASEARCHER_NO_PROGRESS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        old = os.environ.get(name)
        monkeypatch.setenv(name, old if old is not None else "")  # recorded, so undone after the test
        if old is None:
            monkeypatch.delenv(name)


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
