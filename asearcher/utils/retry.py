"""Bounded retry with exponential backoff, for every client that talks to a server (retrieval, LLM endpoints).

A thin policy over tenacity so that all clients retry the same way: at most `max_retries` retries after the first
attempt, waits of backoff_s, 2*backoff_s, 4*backoff_s, ... (plus up to one backoff_s of random jitter when
`jitter`), only for the exception types given, and the last exception re-raised unchanged when they run out.
`on_failure(attempt, exc)` runs after every failed attempt (the last one included), e.g. to record or log it.

    for attempt in retrying(3, 0.5, (httpx.TransportError,)):
        with attempt:
            return client.post(...)
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_none,
    wait_random,
)

OnFailure = Callable[[int, BaseException], None]


def _policy(
    max_retries: int, backoff_s: float, retry_on: tuple[type[BaseException], ...], jitter: bool, on_failure
) -> dict:
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    wait = wait_exponential(multiplier=backoff_s, exp_base=2, min=0) if backoff_s > 0 else wait_none()
    if jitter and backoff_s > 0:
        wait = wait + wait_random(0, backoff_s)

    def after(state: RetryCallState) -> None:
        if on_failure is not None and state.outcome is not None and state.outcome.failed:
            on_failure(state.attempt_number, state.outcome.exception())

    return dict(
        stop=stop_after_attempt(max_retries + 1),
        wait=wait,
        retry=retry_if_exception_type(retry_on),
        after=after,
        reraise=True,
    )


def retrying(
    max_retries: int,
    backoff_s: float,
    retry_on: tuple[type[BaseException], ...],
    *,
    jitter: bool = False,
    on_failure: OnFailure | None = None,
) -> Retrying:
    """A synchronous retry loop (iterate it; run each attempt inside `with attempt:`)."""
    return Retrying(**_policy(max_retries, backoff_s, retry_on, jitter, on_failure))


def aretrying(
    max_retries: int,
    backoff_s: float,
    retry_on: tuple[type[BaseException], ...],
    *,
    jitter: bool = False,
    on_failure: OnFailure | None = None,
) -> AsyncRetrying:
    """The asyncio version (`async for attempt in aretrying(...)`); waits with asyncio.sleep."""
    return AsyncRetrying(**_policy(max_retries, backoff_s, retry_on, jitter, on_failure))
