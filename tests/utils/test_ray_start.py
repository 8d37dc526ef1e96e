"""ensure_ray: a local start that times out (busy machine) is retried; other failures and joins are not."""

from __future__ import annotations

import pytest
import ray

from asearcher.utils import ray_start

TIMEOUT = Exception("The current node timed out during startup. This could happen because ...")


@pytest.fixture
def fake_ray(monkeypatch):
    calls: list[str] = []
    outcomes: list[Exception | None] = []

    def init(address=None, **kw):
        calls.append(address)
        err = outcomes.pop(0) if outcomes else None
        if err is not None:
            raise err

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls, outcomes


def test_a_timed_out_local_start_is_retried_after_cleaning_up(fake_ray):
    calls, outcomes = fake_ray
    outcomes += [TIMEOUT, TIMEOUT, None]
    assert ray_start.ensure_ray() is True
    assert calls == ["local", "shutdown", "local", "shutdown", "local"]


def test_it_gives_up_after_the_last_attempt(fake_ray):
    calls, outcomes = fake_ray
    outcomes += [TIMEOUT] * ray_start.LOCAL_START_ATTEMPTS
    with pytest.raises(Exception, match="timed out during startup"):
        ray_start.ensure_ray()
    assert calls.count("local") == ray_start.LOCAL_START_ATTEMPTS


def test_other_errors_and_cluster_joins_are_not_retried(fake_ray, monkeypatch):
    calls, outcomes = fake_ray
    outcomes += [RuntimeError("bad resources")]
    with pytest.raises(RuntimeError):
        ray_start.ensure_ray()
    assert calls == ["local"]
    calls.clear()
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    outcomes += [TIMEOUT]
    with pytest.raises(Exception, match="timed out"):
        ray_start.ensure_ray()
    assert calls == ["10.0.0.1:6379"]
