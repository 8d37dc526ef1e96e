"""In-process inference engine on Hugging Face transformers (CPU or one GPU), batched and interruptible.

How it works: `agenerate` calls (from one asyncio loop, or several) enqueue requests; one background thread owns
the model and decodes every in-flight request together, one token per step, with a KV cache (left padding,
per-row position ids). New requests join the batch between steps: they are prefilled on their own and their KV
rows appended to the running cache (left-padded to a common width). Finished rows are dropped from the cache by
index selection.

Sampling is per request: each request has its own `torch.Generator` seeded with `SamplingParams.seed`, drawn on the
CPU, so a seeded request gives the same tokens whatever else is in the batch (up to float rounding of batched
matmuls). Recorded logprobs follow `asearcher.llm.sampling` (log_softmax(logits / T) before top-p/top-k).

Interruptible weight updates (asynchronous RL): `update_weights(state_dict | hf_dir | BroadcastUpdate, version)` may
be called while requests are in flight. A broadcast (rl.weight_sync: broadcast) is first received in a thread of its
own into fresh buffers while decoding goes on (asearcher.llm.weight_broadcast); then, as for the other payloads, the
worker applies it between two decode steps, sets `version`, re-prefills every in-flight sequence under the new
weights and continues; `output_versions` records the version that produced each token.

Prefix cache (`prefix_cache_tokens` > 0): a finished request's KV is kept (asearcher.llm.prefix_cache) and a new
request whose prompt starts with the same tokens (the agent's next turn) prefills only the rest. It is cleared when
the weights change, so no request mixes KV from two versions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from asearcher.llm.hf_weights import load_state_dict_from_dir, resolve_dtype
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.llm.kv_rows import cache_of, left_padded, merge_rows, mergeable, row_layers, select_rows
from asearcher.llm.prefix_cache import PrefixCache, PrefixHit
from asearcher.llm.sampling import find_stop, sample_token, validate_sampling

log = logging.getLogger(__name__)


@dataclass
class _Seq:
    prompt: list[int]
    sampling: SamplingParams
    rid: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    generator: torch.Generator
    stop_ids: set[int]
    stop_window: int  # output tokens to decode when looking for a stop string
    t0: float = field(default_factory=time.perf_counter)
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    done: bool = False
    cancelled: bool = False
    finish_reason: str = ""
    stop_string: str | None = None


def _resolve(fut: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():  # cancelled by the caller
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class TransformersEngine(InferenceEngine):
    """See the module docstring. `join_every`: decode steps between admissions of new requests into a busy
    batch (1 = every step; larger values trade newcomer latency for fewer small prefills). `prefix_cache_tokens`:
    tokens of finished requests' KV kept for reuse (0 = off; models whose cache layers cannot be merged, e.g.
    sliding-window attention, run without)."""

    def __init__(
        self,
        model_path_or_model: Any,
        tokenizer: Any = None,
        device: str = "cpu",
        max_batch_size: int = 32,
        dtype: Any = "auto",
        version: int = 0,
        join_every: int = 1,
        prefix_cache_tokens: int = 0,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        if isinstance(model_path_or_model, (str, Path)):
            path = str(model_path_or_model)
            if not Path(path).exists():
                raise FileNotFoundError(
                    f"model directory {path} does not exist (build one with `asearcher tiny-model`)"
                )
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
            self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        else:
            self.model = model_path_or_model.to(self.dtype)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(self.model.name_or_path)
            self.tokenizer = tokenizer
        self.model.to(device).eval()
        self.max_batch_size = max_batch_size
        self.join_every = max(1, join_every)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self._eos_ids = self._collect_eos_ids()
        # transformers renamed forward's `past_key_values` to `cache` (the old name warns, then goes in 5.40)
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )
        self._pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self._eos_ids)
        )
        self._version = version
        self._cond = threading.Condition()
        self._pending: list[_Seq] = []
        self._updates: list[tuple[Any, int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._inflight: list[_Seq] = []  # the worker's current batch (read by `inflight()`)
        # held while weights are copied in (weights_digest reads under it)
        self._weights_lock = threading.Lock()
        self._paused = False
        self._idle = threading.Event()  # set while the worker is not inside a step
        self._closed = False
        #: called in the worker thread after every step with the engine (monitoring, tests); must be quick
        self.on_step: Any = None
        self._prefix: PrefixCache | None = None
        if prefix_cache_tokens > 0 and mergeable(cache_of(self.model.config)):
            self._prefix = PrefixCache(prefix_cache_tokens)
        self._thread = threading.Thread(target=self._worker, name="transformers-engine", daemon=True)
        self._thread.start()

    def _collect_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            ids.update([gen_eos] if isinstance(gen_eos, int) else gen_eos)
        return ids

    # ---- public API -------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        s = request.sampling
        validate_sampling(s)
        ids = [int(t) for t in request.input_ids]
        if not ids:
            raise ValueError("input_ids is empty: a prompt needs at least one token")
        vocab = self.model.config.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"input_ids contains token ids outside the vocabulary [0, {vocab}): {bad[:5]}")
        if len(ids) >= self.max_context:
            raise ValueError(f"prompt has {len(ids)} tokens; the model's context is {self.max_context}")
        loop = asyncio.get_running_loop()
        seed = s.seed if s.seed is not None else secrets.randbits(63)
        seq = _Seq(
            prompt=ids,
            sampling=s,
            rid=request.rid,
            loop=loop,
            future=loop.create_future(),
            generator=torch.Generator().manual_seed(int(seed)),
            stop_ids=self._eos_ids | {int(t) for t in s.stop_token_ids},
            stop_window=max((len(x.encode()) for x in s.stop), default=0) + 2,
        )
        with self._cond:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._pending.append(seq)
            self._cond.notify()
        try:
            return await seq.future
        except asyncio.CancelledError:
            seq.cancelled = True  # the worker drops it at the next step
            raise

    async def update_weights(self, state_dict: dict[str, Any] | str | Any, version: int) -> None:
        """Load weights between two decode steps; in-flight requests continue under them (see module doc)."""
        from asearcher.llm.weight_broadcast import BroadcastUpdate, receive_state_dict

        if isinstance(state_dict, BroadcastUpdate):
            # received off the decode thread (generation goes on meanwhile), swapped in between two steps below
            device = self.device if state_dict.group.backend == "nccl" else "cpu"
            state_dict = await asyncio.to_thread(receive_state_dict, state_dict, device)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._updates.append((state_dict, int(version), loop, fut))
            self._cond.notify()
        await fut

    def weight_receiver(self) -> dict[str, Any]:
        from asearcher.llm.weight_broadcast import dtype_name

        return {
            "ranks": 1,
            "dtype": dtype_name(self.dtype),
            "device": "cuda" if self.device.startswith("cuda") else "cpu",
        }

    def weights_digest(self) -> str:
        """sha256 of the loaded weights (asearcher.llm.weight_broadcast.digest): equal digests, equal bits."""
        from asearcher.llm.weight_broadcast import digest

        with self._weights_lock:
            return digest(self.model.state_dict().items())

    async def pause(self) -> None:
        """Stop decoding after the current step (requests stay queued); returns once the worker is idle."""
        with self._cond:
            self._paused = True
        while not self._idle.is_set() and self._thread.is_alive():
            await asyncio.sleep(0.001)

    def request_pause(self) -> None:
        """Thread-safe, non-blocking pause (e.g. from `on_step`); `await pause()` waits for the worker too."""
        with self._cond:
            self._paused = True

    async def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify()

    def prefix_cache_stats(self) -> dict[str, Any]:
        """Entries, tokens held, hits, misses and prompt tokens reused so far (all 0 when the cache is off)."""
        if self._prefix is None:
            return {"entries": 0, "tokens": 0, "hits": 0, "misses": 0, "reused_tokens": 0}
        return self._prefix.stats()

    def inflight(self) -> list[dict[str, Any]]:
        """A snapshot of the current batch: rid, prompt and output lengths (for monitoring and tests)."""
        return [
            {"rid": s.rid, "prompt_tokens": len(s.prompt), "output_tokens": len(s.out)}
            for s in self._inflight
        ]

    async def aclose(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    # ---- worker -----------------------------------------------------------------------------------------------
    def _worker(self) -> None:
        batch: list[_Seq] = []
        cache = attn = logits = None
        steps_since_prefill = 0
        stale = False  # the cache was computed by older weights: re-prefill before the next step
        with torch.inference_mode():
            while True:
                with self._cond:
                    while (
                        not self._closed
                        and not self._updates
                        and (self._paused or (not batch and not self._pending))
                    ):
                        self._idle.set()
                        self._cond.wait()
                    self._idle.clear()
                    if self._closed:
                        break
                    updates, self._updates = self._updates, []
                    admit: list[_Seq] = []
                    room = self.max_batch_size - len(batch)
                    if (
                        self._pending
                        and room > 0
                        and not self._paused
                        and (not batch or steps_since_prefill >= self.join_every)
                    ):
                        admit, self._pending = self._pending[:room], self._pending[room:]
                for weights, version, loop, fut in updates:
                    try:
                        self._load_weights(weights)
                    except Exception as e:  # the caller sees the error; the old weights stay
                        loop.call_soon_threadsafe(_resolve, fut, None, e)
                        continue
                    self._version = version
                    stale = True
                    if self._prefix is not None:  # its KV was computed by the old weights
                        self._prefix.clear()
                    loop.call_soon_threadsafe(_resolve, fut, None)
                # drop the received tensors now: an idle worker would hold a whole extra copy until it next wakes
                updates = weights = None  # type: ignore[assignment]
                if self._paused:
                    continue
                if any(s.cancelled for s in batch):  # drop their cache rows too, keeping rows aligned
                    cache, attn, batch = self._keep(cache, attn, batch, [not s.cancelled for s in batch])
                admit = [s for s in admit if not s.cancelled]
                if not batch and not admit:
                    cache = None
                    continue
                try:
                    if cache is None or stale or not batch or (admit and not mergeable(cache)):
                        batch, logits, cache, attn = self._prefill(batch + admit)
                        stale = False
                    else:
                        # one decode step for the running rows; newcomers are prefilled on their own and their
                        # cache rows appended (left-padded to a common width)
                        logits, cache, attn = self._decode(batch, cache, attn)
                        if admit:
                            admit, logits_new, cache_new, attn_new = self._prefill(admit)
                            cache, attn = merge_rows(cache, attn, cache_new, attn_new)
                            logits = torch.cat([logits, logits_new], dim=0)
                            batch = batch + admit
                    steps_since_prefill = 0 if admit else steps_since_prefill + 1
                    self._inflight = batch
                    self._advance(batch, logits)
                except Exception as e:  # fail the whole batch loudly rather than hang its callers
                    log.exception("generation step failed")
                    for s in batch:
                        s.loop.call_soon_threadsafe(_resolve, s.future, None, e)
                    batch, cache = [], None
                    continue
                if any(s.done or s.cancelled for s in batch):
                    try:  # before the callers hear back: their next turn may arrive at once
                        self._keep_prefixes(batch, cache, attn)
                    except Exception:  # the cache only saves work; never fail a finished request for it
                        log.exception("prefix cache: could not keep finished requests' KV")
                    for s in batch:
                        if s.done and not s.cancelled:
                            s.loop.call_soon_threadsafe(_resolve, s.future, self._result(s))
                    cache, attn, batch = self._keep(
                        cache, attn, batch, [not (s.done or s.cancelled) for s in batch]
                    )
                    self._inflight = batch
                if self.on_step is not None:
                    self.on_step(self)
        # closed: every waiting caller gets what it has so far, marked "abort"
        with self._cond:
            leftover, self._pending = batch + self._pending, []
            updates, self._updates = self._updates, []
        for s in leftover:
            if not s.done:
                s.finish_reason = "abort"
                s.loop.call_soon_threadsafe(_resolve, s.future, self._result(s))
        for _, _, loop, fut in updates:
            loop.call_soon_threadsafe(
                _resolve, fut, None, RuntimeError("engine closed before the weight update")
            )
        self._idle.set()

    @staticmethod
    def _keep(cache: Any, attn: Any, batch: list[_Seq], keep: list[bool]) -> tuple[Any, Any, list[_Seq]]:
        """Keep only the rows marked in `keep` (in the batch, the KV cache and the attention mask)."""
        idx = [i for i, k in enumerate(keep) if k]
        batch = [batch[i] for i in idx]
        if not batch or cache is None:
            return None, None, batch
        cache, attn = select_rows(cache, attn, idx)
        return cache, attn, batch

    def _prefill(self, batch: list[_Seq]) -> tuple[list[_Seq], torch.Tensor, Any, torch.Tensor]:
        """Prefill `batch` (prompt + output so far of each row). Rows with a cached prefix prefill only the rest,
        one by one; the others together. Returns the rows in the order of the logits and cache rows."""
        hits = [self._prefix.take(s.prompt + s.out) if self._prefix is not None else None for s in batch]
        cold = [s for s, h in zip(batch, hits, strict=True) if h is None]
        parts = [(cold, *self._prefill_rows(cold))] if cold else []
        parts += [([s], *self._prefill_from(s, h)) for s, h in zip(batch, hits, strict=True) if h is not None]
        rows, logits, cache, attn = parts[0]
        for rows_b, logits_b, cache_b, attn_b in parts[1:]:
            cache, attn = merge_rows(cache, attn, cache_b, attn_b)
            logits = torch.cat([logits, logits_b], dim=0)
            rows = rows + rows_b
        return rows, logits, cache, attn

    def _prefill_rows(self, batch: list[_Seq]) -> tuple[torch.Tensor, Any, torch.Tensor]:
        ids, attn, pos = left_padded([s.prompt + s.out for s in batch], self._pad_id, self.device)
        cache = cache_of(self.model.config)
        return self._forward(ids, attn, pos, cache), cache, attn

    def _prefill_from(self, s: _Seq, hit: PrefixHit) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """One row whose first `hit.length` tokens' KV is cached: prefill only the tokens after them."""
        seq, n = s.prompt + s.out, hit.length
        cache = cache_of(self.model.config, hit.layers)
        ids = torch.tensor([seq[n:]], device=self.device)
        attn = torch.ones((1, len(seq)), dtype=torch.long, device=self.device)
        pos = torch.arange(n, len(seq), device=self.device)[None]
        return self._forward(ids, attn, pos, cache), cache, attn

    def _keep_prefixes(self, batch: list[_Seq], cache: Any, attn: torch.Tensor) -> None:
        """Copy each finished row's KV into the prefix cache before its row is dropped. The cache holds every
        token but the last sampled one (never fed to the model); a row's tokens sit at the right end (left
        padding)."""
        if self._prefix is None or cache is None:
            return
        for i, s in enumerate(batch):
            if not s.done or s.cancelled:
                continue
            n = int(attn[i].sum())
            tokens = (s.prompt + s.out)[:-1]
            if n != len(tokens):  # cannot happen while rows stay aligned; never store a misaligned entry
                log.warning(
                    "prefix cache: row %s holds %d positions for %d tokens; not kept", s.rid, n, len(tokens)
                )
                continue
            self._prefix.put(tokens, row_layers(cache, i, n))

    def _decode(
        self, batch: list[_Seq], cache: Any, attn: torch.Tensor
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        ids = torch.tensor([[s.out[-1]] for s in batch], device=self.device)
        attn = torch.cat([attn, torch.ones((len(batch), 1), dtype=attn.dtype, device=self.device)], dim=1)
        pos = (attn.sum(-1, keepdim=True) - 1).clamp(min=0)
        return self._forward(ids, attn, pos, cache), cache, attn

    def _forward(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        """The last position's logits; `cache` (a DynamicCache) is extended in place."""
        kw = {self._cache_kw: cache}
        return self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1, **kw
        ).logits[:, -1, :]

    def _advance(self, batch: list[_Seq], logits: torch.Tensor) -> None:
        logits = logits.float().cpu()
        for i, s in enumerate(batch):
            if s.cancelled:
                continue
            tok, lp = sample_token(logits[i], s.sampling, s.generator)
            s.out.append(tok)
            s.logprobs.append(lp)
            s.versions.append(self._version)
            if tok in s.stop_ids:
                s.finish_reason = "stop"
            elif s.sampling.stop and self._stop_in_tail(s):
                s.finish_reason = "stop"
            elif len(s.out) >= s.sampling.max_new_tokens or len(s.prompt) + len(s.out) >= self.max_context:
                s.finish_reason = "length"
            else:
                continue
            s.done = True  # resolved by the worker once its KV is in the prefix cache

    def _stop_in_tail(self, s: _Seq) -> bool:
        # only the tail can hold a stop string completed by this token (earlier tokens were checked before)
        tail = self.tokenizer.decode(s.out[-s.stop_window :], skip_special_tokens=False)
        hit = find_stop(tail, s.sampling.stop)
        if hit is None:
            return False
        s.stop_string = hit[0]
        return True

    def _result(self, s: _Seq) -> GenerationResult:
        text = self.tokenizer.decode(s.out, skip_special_tokens=True)
        if s.stop_string is not None:
            hit = find_stop(text, [s.stop_string])
            if hit is not None:  # keep the stop string, drop any text the last token carried past it
                text = text[: hit[1]]
        return GenerationResult(
            output_ids=list(s.out),
            output_logprobs=list(s.logprobs),
            output_versions=list(s.versions),
            finish_reason=s.finish_reason,
            stop_string=s.stop_string,
            text=text,
            latency_s=time.perf_counter() - s.t0,
        )

    def _load_weights(self, weights: dict[str, Any] | str | Path) -> None:
        sd = load_state_dict_from_dir(weights) if isinstance(weights, (str, Path)) else weights
        own = self.model.state_dict()
        unexpected = [k for k in sd if k not in own]
        missing = [k for k in own if k not in sd]
        if getattr(self.model.config, "tie_word_embeddings", False):
            missing = [k for k in missing if k != "lm_head.weight"]
        if unexpected or missing:
            raise ValueError(
                f"weight update does not match the model: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
        for k, v in sd.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(
                    f"weight update: {k} has shape {tuple(v.shape)}, model has {tuple(own[k].shape)}"
                )
        with self._weights_lock:
            for k, v in sd.items():
                own[k].copy_(torch.as_tensor(v))
