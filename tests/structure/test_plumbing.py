"""The shared plumbing: atomic writes, bounded retry, the registry."""

from __future__ import annotations

import asyncio
import time

import pytest

from asearcher.errors import UserFacingError
from asearcher.utils.atomic import atomic_dir, atomic_path, atomic_write_text, replace_dir
from asearcher.utils.registry import Registry, UnknownNameError, load_object
from asearcher.utils.retry import aretrying, retrying


# ---- atomic writes ---------------------------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    f = tmp_path / "sub" / "a.txt"
    atomic_write_text(f, "one")
    atomic_write_text(f, "two")
    assert f.read_text() == "two" and [p.name for p in f.parent.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(f) as tmp:
        tmp.write_text("half")
        assert tmp.name.endswith("x.jsonl")  # the extension stays last, for writers that sniff it
        raise RuntimeError("crash")
    assert f.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]
    with atomic_path(f) as tmp:
        tmp.write_text("new\n")
    assert f.read_text() == "new\n"


def test_atomic_dir_swaps_whole_or_not_at_all(tmp_path):
    d = tmp_path / "model"
    with atomic_dir(d) as tmp:
        (tmp / "w.bin").write_text("v1")
    with pytest.raises(ValueError), atomic_dir(d) as tmp:
        (tmp / "w.bin").write_text("v2-partial")
        raise ValueError
    assert (d / "w.bin").read_text() == "v1" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_dir(d) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in d.iterdir()) == ["other"]  # replaced, not merged
    work = tmp_path / "build"
    work.mkdir()
    (work / "meta.json").write_text("{}")
    replace_dir(work, d)
    assert sorted(p.name for p in d.iterdir()) == ["meta.json"] and not work.exists()


# ---- retry -----------------------------------------------------------------------------------------------------
def test_retry_is_bounded_backs_off_and_reraises_the_last_error():
    seen: list[tuple[int, str]] = []
    calls = 0
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="3"):
        for attempt in retrying(
            2, 0.02, (ConnectionError,), on_failure=lambda a, e: seen.append((a, str(e)))
        ):
            with attempt:
                calls += 1
                raise ConnectionError(str(calls))
    assert calls == 3 and seen == [(1, "1"), (2, "2"), (3, "3")]
    assert time.perf_counter() - t0 >= 0.02 + 0.04  # waits of backoff, 2 x backoff


def test_retry_does_not_retry_other_errors_and_returns_on_success():
    calls = 0
    with pytest.raises(KeyError):
        for attempt in retrying(5, 0.0, (ConnectionError,)):
            with attempt:
                calls += 1
                raise KeyError("not transient")
    assert calls == 1

    async def flaky() -> str:
        n = 0
        async for attempt in aretrying(3, 0.0, (TimeoutError,)):
            with attempt:
                n += 1
                if n < 3:
                    raise TimeoutError
                return f"ok after {n}"
        raise AssertionError

    assert asyncio.run(flaky()) == "ok after 3"


# ---- registry --------------------------------------------------------------------------------------------------
def test_registry_suggests_names_the_key_and_loads_lazily():
    reg: Registry = Registry("widget", key="tool.widget")
    reg.register("hammer", int)
    reg.register("saw", "collections:OrderedDict")  # lazy: imported on first get
    assert reg.get("hammer") is int and "saw" in reg and "drill" not in reg
    from collections import OrderedDict

    assert reg.get("saw") is OrderedDict
    with pytest.raises(UnknownNameError) as e:
        reg.get("hamer")
    msg = str(e.value)
    assert msg.startswith("tool.widget: unknown widget 'hamer'.") and "Did you mean 'hammer'?" in msg
    assert "Known: hammer, saw." in msg and isinstance(e.value, UserFacingError)
    assert "Did you mean" not in str(pytest.raises(UnknownNameError, reg.get, "zzzzzz").value)


def test_registry_aliases_case_folding_and_conflicts():
    reg: Registry = Registry("benchmark", case_insensitive=True, show=str)
    reg.register("HotpotQA", 1, aliases=["HotpotQA_rand1000"])
    assert reg.get("hotpotqa_RAND1000") == 1 and reg.names() == ["HotpotQA"]
    with pytest.raises(UnknownNameError, match=r"Did you mean HotpotQA\?"):
        reg.get("hotpot_qa")
    with pytest.raises(UserFacingError, match="used by both"):
        reg.register("Other", 2, aliases=["hotpotqa"])


def test_the_product_registries_share_one_error_style():
    from asearcher.agent.registry import AGENTS
    from asearcher.llm.factory import ENGINES
    from asearcher.rl.trainers import TRAINERS

    for reg, wrong, key in ((AGENTS, "serch-r1", "agent.kind"), (ENGINES, "vlm", "engine.kind"),
                            (TRAINERS, "deepspeeed", "rl.backend")):  # fmt: skip
        with pytest.raises(UnknownNameError) as e:
            reg.get(wrong)
        assert str(e.value).startswith(f"{key}: unknown") and "Did you mean" in str(e.value)


def test_load_object_errors_are_clear():
    assert load_object("os.path:join") is __import__("os").path.join
    with pytest.raises(ValueError, match="module:attribute"):
        load_object("os.path.join")
