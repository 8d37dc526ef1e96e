"""Client for the retrieval server (ours or an upstream ASearcher/Search-R1 one): used by agents, eval and RL.

Connection errors, timeouts and 5xx answers are retried a bounded number of times with exponential backoff
(switching to the next server when several are known); a 4xx answer is the caller's mistake and is raised at
once with the server's message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from asearcher.errors import UserFacingError
from asearcher.utils.retry import aretrying, retrying
from asearcher.utils.secrets import redact

from .address import ADDR_DIR_ENV, URL_ENV, read_addresses

# httpx logs every request at INFO; at agent/RL request rates that is noise and costs time.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RetrievalError(RuntimeError):
    """The retrieval server could not be reached or failed (after retries)."""


class RetrievalRequestError(RetrievalError):
    """The server rejected the request (4xx); `message` is the server's explanation."""

    def __init__(self, status: int, message: str):
        super().__init__(f"retrieval server rejected the request ({status}): {message}")
        self.status = status
        self.message = message


class _ServerError(Exception):
    """A 5xx answer (retried)."""


# transport failures, 5xx, and a 2xx whose body is not the expected JSON: retried (a 4xx is not)
_RETRYABLE = (httpx.TransportError, _ServerError, ValueError, KeyError)


class NoRetrievalServerError(UserFacingError, RetrievalError):
    """No server address could be found."""


class RetrievalClient:
    def __init__(
        self,
        base_url: str | Sequence[str],
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_connections: int = 256,
    ):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("RetrievalClient needs at least one base_url")
        self.base_urls = [u if "://" in u else f"http://{u}" for u in (x.rstrip("/") for x in urls)]
        self._current = random.randrange(len(self.base_urls))  # spread clients over servers, as upstream does
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return self.base_urls[self._current]

    @classmethod
    def discover(cls, addr_dir: str | Path | None = None, **kw: Any) -> RetrievalClient:
        """$ASEARCHER_RETRIEVAL_URL (comma-separated), else the Host*_IP*.txt files in addr_dir / $RAG_SERVER_ADDR_DIR."""
        env_url = os.environ.get(URL_ENV, "").strip()
        if env_url and addr_dir is None:
            return cls([u.strip() for u in env_url.split(",") if u.strip()], **kw)
        addr_dir = addr_dir or os.environ.get(ADDR_DIR_ENV)
        if not addr_dir:
            raise NoRetrievalServerError(
                f"no retrieval server: set {URL_ENV}=http://host:port, or {ADDR_DIR_ENV} to the directory where "
                "`asearcher serve-retrieval --addr-dir` writes its address (or run the command under "
                "`asearcher with-retrieval`)"
            )
        urls = read_addresses(addr_dir)
        if not urls:
            raise NoRetrievalServerError(
                f"no Host*_IP*.txt address file in {addr_dir}: is `asearcher serve-retrieval --addr-dir {addr_dir}` running?"
            )
        return cls(urls, **kw)

    # -- plumbing -------------------------------------------------------------------------------------------

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))

    def _get_aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            # An httpx AsyncClient belongs to one event loop; a new loop (e.g. a second asyncio.run) gets a new one.
            self._aclient = httpx.AsyncClient(timeout=self._timeout(), limits=self._limits)
            self._aclient_loop = loop
        return self._aclient

    def _get_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout(), limits=self._limits)
        return self._client

    @staticmethod
    def _message(resp: httpx.Response) -> str:
        try:
            body = resp.json()
            return redact(str(body.get("error") or body.get("detail") or resp.text))
        except (ValueError, AttributeError):
            return redact(resp.text)[:500]  # redacted before the cut, so a cut never splits a secret

    def _check(self, resp: httpx.Response) -> Any:
        if 400 <= resp.status_code < 500:
            raise RetrievalRequestError(resp.status_code, self._message(resp))
        if resp.status_code >= 500:  # retried
            raise _ServerError(f"HTTP {resp.status_code}: {self._message(resp)}")
        return resp.json()["result"]

    def _retry_policy(self, path: str, errors: list[str]) -> dict:
        def on_failure(attempt: int, err: BaseException) -> None:
            errors.append(f"{self.base_url}{path}: {type(err).__name__}: {err}")
            if len(self.base_urls) > 1:  # fail over to the next server
                self._current = (self._current + 1) % len(self.base_urls)

        return dict(
            max_retries=self.max_retries, backoff_s=self.backoff_s, retry_on=_RETRYABLE, on_failure=on_failure
        )

    def _exhausted(self, errors: list[str]) -> RetrievalError:
        return RetrievalError(f"retrieval request failed after {len(errors)} attempts: " + " | ".join(errors))

    async def _apost(self, path: str, payload: dict) -> Any:
        errors: list[str] = []
        try:
            async for attempt in aretrying(**self._retry_policy(path, errors)):
                with attempt:
                    return self._check(await self._get_aclient().post(self.base_url + path, json=payload))
        except _RETRYABLE as e:
            raise self._exhausted(errors) from e
        raise AssertionError("unreachable")

    def _post(self, path: str, payload: dict) -> Any:
        errors: list[str] = []
        try:
            for attempt in retrying(**self._retry_policy(path, errors)):
                with attempt:
                    return self._check(self._get_client().post(self.base_url + path, json=payload))
        except _RETRYABLE as e:
            raise self._exhausted(errors) from e
        raise AssertionError("unreachable")

    @staticmethod
    def _retrieve_payload(queries: Sequence[str], topk: int | None, return_scores: bool) -> dict:
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings, not one string")
        return {"queries": list(queries), "topk": topk, "return_scores": return_scores}

    # -- API ------------------------------------------------------------------------------------------------

    async def aretrieve(
        self, queries: Sequence[str], topk: int | None = 5, return_scores: bool = False
    ) -> list[list[dict]]:
        """Top-k docs ({"id","contents","url"}) per query; with return_scores, {"document": doc, "score": s}."""
        return await self._apost("/retrieve", self._retrieve_payload(queries, topk, return_scores))

    async def aaccess(self, urls: Sequence[str]) -> list[dict | None]:
        """The whole page ({"url","contents"}) per URL, None for unknown pages."""
        return await self._apost("/access", {"urls": list(urls)})

    def retrieve(
        self, queries: Sequence[str], topk: int | None = 5, return_scores: bool = False
    ) -> list[list[dict]]:
        return self._post("/retrieve", self._retrieve_payload(queries, topk, return_scores))

    def access(self, urls: Sequence[str]) -> list[dict | None]:
        return self._post("/access", {"urls": list(urls)})

    def health(self) -> dict:
        resp = self._get_client().get(self.base_url + "/health")
        resp.raise_for_status()
        return resp.json()

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def __aenter__(self) -> RetrievalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> RetrievalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
