"""InferenceEngine over any OpenAI-compatible HTTP endpoint (vLLM, SGLang, `asearcher serve-llm`, hosted APIs).

`agenerate` uses /v1/completions: the prompt is sent as token ids (servers built on vLLM/SGLang and serve-llm
accept them); if the server rejects a token-id prompt once, the engine falls back to sending decoded text for the
rest of its life. Output token ids come from the server when it returns them (`token_ids` in the choice);
otherwise the text is re-tokenized locally and the result is flagged `retokenized=True` (its ids and logprobs are
then approximate). `achat` uses /v1/chat/completions (the LLM judge).

Errors: 429, 5xx, timeouts and connection errors are retried a bounded number of times with exponential backoff;
other 4xx are raised at once. The API key is read from the environment variable named in the config, registered
with asearcher.utils.secrets and never logged: every error message (whatever the branch: HTTP error, a body that
is not JSON, JSON without choices, a transport error) passes the one redaction step, so a server that echoes the
Authorization header does not put the key into logs or result files.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.llm.sampling import effective_temperature, find_stop, validate_sampling
from asearcher.utils.retry import aretrying
from asearcher.utils.secrets import redact, register_env

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, 429 or 5xx (message already redacted)."""


_TRANSIENT = (_Transient,)


class EndpointError(RuntimeError):
    """The endpoint answered with an error (after retries for transient ones)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(redact(message))  # the one redaction step for every branch
        self.status = status


def sampling_to_openai(s: SamplingParams) -> dict[str, Any]:
    """OpenAI request fields for SamplingParams. Non-standard fields (top_k, stop_token_ids) only when set."""
    body: dict[str, Any] = {
        "max_tokens": s.max_new_tokens,
        "temperature": 0.0 if s.greedy else s.temperature,
        "top_p": s.top_p,
    }
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.top_k > 0:
        body["top_k"] = s.top_k
    if s.stop_token_ids:
        body["stop_token_ids"] = list(s.stop_token_ids)
    return body


def _body(text: str, limit: int) -> str:
    """A response body for an error message: redacted first, then cut (a cut must never split a secret)."""
    return redact(text)[:limit]


class OpenAIEngine(InferenceEngine):
    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: Any = None,
        api: str = "completions",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
    ):
        if not base_url:
            raise ValueError("OpenAIEngine needs base_url, e.g. http://127.0.0.1:8000/v1")
        if api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer = tokenizer
        self._key = register_env(api_key_env)  # known to the redaction step from now on
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers)
        self._ids_ok = True  # does the server accept token-id prompts? (learned on the first rejection)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIEngine(base_url={self.base_url!r}, model={self.model!r}, api={self.api!r})"

    @property
    def version(self) -> int:
        return 0  # a remote endpoint's weights are opaque to us

    async def update_weights(self, state_dict: Any, version: int) -> None:
        raise NotImplementedError(
            "OpenAIEngine cannot update weights: use engine.kind=transformers or vllm for RL rollouts"
        )

    # ---- HTTP ---------------------------------------------------------------------------------------------------
    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        last: list[str] = [""]

        def on_failure(attempt: int, err: BaseException) -> None:
            last[0] = str(err)
            if attempt <= self.max_retries:
                log.warning(
                    "retrying %s after attempt %d/%d failed: %s", url, attempt, self.max_retries + 1, last[0]
                )

        try:
            async for attempt in aretrying(self.max_retries, self.backoff_s, _TRANSIENT, jitter=True,
                                           on_failure=on_failure):  # fmt: skip
                with attempt:
                    try:
                        resp = await self._client.post(url, json=body)
                    except (httpx.TransportError, httpx.TimeoutException) as e:
                        raise _Transient(redact(f"{type(e).__name__}: {e}")) from None
                    if resp.status_code in RETRY_STATUS:
                        raise _Transient(f"HTTP {resp.status_code}: {_body(resp.text, 300)}")
        except _Transient:
            raise EndpointError(
                f"{url} failed after {self.max_retries + 1} attempts; last error: {last[0]}"
            ) from None
        if resp.status_code >= 400:
            raise EndpointError(
                f"{url} answered HTTP {resp.status_code}: {_body(resp.text, 500)}",
                resp.status_code,
            )
        try:
            return resp.json()
        except ValueError:
            raise EndpointError(f"{url} returned a non-JSON body: {_body(resp.text, 200)!r}") from None

    # ---- API ----------------------------------------------------------------------------------------------------
    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        if self.api != "completions":
            raise NotImplementedError(
                "agents need token-level generation: use api='completions' (engine.api) for this endpoint; "
                "api='chat' endpoints serve only achat() (e.g. the LLM judge)"
            )
        s = request.sampling
        validate_sampling(s)
        t0 = time.perf_counter()
        # return_token_ids / include_stop_str_in_output: vLLM extensions, also understood by serve-llm
        body = {"model": self.model, **sampling_to_openai(s), "logprobs": 1, "return_token_ids": True}
        if s.stop:
            body["include_stop_str_in_output"] = True
        if self._ids_ok:
            try:
                data = await self._post("/completions", {**body, "prompt": list(request.input_ids)})
            except EndpointError as e:
                if e.status not in (400, 422) or self.tokenizer is None:
                    raise
                log.warning("endpoint rejected a token-id prompt; sending decoded text from now on")
                self._ids_ok = False
        if not self._ids_ok:
            if self.tokenizer is None:
                raise ValueError("sending a text prompt needs a tokenizer (engine tokenizer dir)")
            prompt = self.tokenizer.decode(request.input_ids, skip_special_tokens=False)
            data = await self._post("/completions", {**body, "prompt": prompt})
        return self._to_result(data, s, time.perf_counter() - t0)

    def _to_result(self, data: dict[str, Any], s: SamplingParams, latency: float) -> GenerationResult:
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"completion response without choices: {_body(str(data), 200)}") from None
        text = choice.get("text") or ""
        finish = choice.get("finish_reason") or "stop"
        stop_reason = choice.get("stop_reason")
        stop_string = stop_reason if isinstance(stop_reason, str) else None
        if stop_string is None and finish == "stop" and s.stop:
            hit = find_stop(text, s.stop)
            stop_string = hit[0] if hit is not None and hit[1] == len(text) else None
        if stop_string is not None and not text.endswith(stop_string):
            text += stop_string  # the server cut it off; our convention keeps it
        lp_block = choice.get("logprobs") or {}
        server_lps = [float(x) if x is not None else 0.0 for x in (lp_block.get("token_logprobs") or [])]
        ids = choice.get("token_ids")
        retokenized = ids is None
        if retokenized:
            if self.tokenizer is None:
                raise EndpointError(
                    "the server returned no token ids and no tokenizer is configured to recover them"
                )
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        lps = server_lps if len(server_lps) == len(ids) else [0.0] * len(ids)
        return GenerationResult(
            output_ids=[int(t) for t in ids],
            output_logprobs=lps,
            output_versions=[self.version] * len(ids),
            finish_reason=finish if finish in ("stop", "length", "abort") else "stop",
            stop_string=stop_string,
            text=text,
            latency_s=latency,
            retokenized=retokenized,
        )

    async def achat(self, messages: list[dict[str, str]], sampling: SamplingParams | None = None) -> str:
        s = sampling or SamplingParams()
        validate_sampling(s)
        body = {"model": self.model, "messages": messages, **sampling_to_openai(s)}
        data = await self._post("/chat/completions", body)
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"chat response without a message: {_body(str(data), 200)}") from None

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["EndpointError", "OpenAIEngine", "sampling_to_openai", "effective_temperature"]
