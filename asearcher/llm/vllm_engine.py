"""InferenceEngine on vLLM (GPU machines): an async vLLM engine inside a Ray actor, and a thin async proxy.

vLLM is an optional dependency (`pip install vllm==0.32.0`, the newest release that pins torch 2.13; see
docs/engines.md); it is imported only where the engine is built, and a missing install is a clear error.

- `VLLMEngineActorImpl` owns a `vllm` AsyncLLM engine. Requests are token-id prompts with per-request seeds, stop
  strings and stop token ids; it returns one logprob per sampled token.
- `VLLMEngine` (the InferenceEngine agents and rollout workers use) holds the tokenizer and runs the engine where its
  GPUs are reserved, once (asearcher.utils.placement): in its own process when that process already holds
  `tensor_parallel_size` GPUs from Ray (a rollout worker), otherwise in a `VLLMEngineActor` Ray actor that reserves
  them (`num_gpus = tensor_parallel_size`; evaluation). Tensor parallelism uses vLLM's multiprocessing executor
  (its workers are child processes that inherit the reserved GPUs), never vLLM's Ray executor, which would reserve
  the same GPUs a second time.

Weight updates use abort-and-continue (the same idea as AReaL's interruptible SGLang generation): new requests wait,
every in-flight request is aborted, the new weights are loaded (`load_weights` on every worker, from a state dict
or an HF checkpoint dir read in the actor), the prefix cache is reset (its KV was computed by the old weights),
`version` is bumped, and each interrupted request is resubmitted with prompt + tokens so far and the remaining
token budget. Tokens of each segment record the version that produced them.

Weights reach the workers in one of three forms: a state dict (through Ray and vLLM's RPC), an HF checkpoint dir
(read in the actor), or a `BroadcastUpdate` (rl.weight_sync: broadcast), vLLM's path for external trainers: the
engine is built with a worker extension (`WeightReceiverExtension`, `worker_extension_cls`), and
`collective_rpc("asearcher_receive_weights", metadata)` has every worker (each tensor-parallel rank) join the
trainer's weight group as rank `update.rank + its rank`, receive the bucketed NCCL broadcast (gloo when the trainer
is on the CPU) and pass each bucket to `model.load_weights` as it arrives (asearcher.llm.weight_broadcast: the same
layout, group and receive loop the transformers engine uses). The metadata travels as plain lists, which vLLM's RPC
serializes without pickling.

Logprobs: vLLM's `logprobs_mode="processed_logprobs"` returns log-probabilities after temperature scaling; this
equals the suite's convention (log_softmax(logits / T), see asearcher.llm.sampling) when top_p = 1 and
top_k = -1, which is how RL rollouts sample. With top-p/top-k set, vLLM reports the truncated distribution.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.llm.sampling import sampling_from_dict, validate_sampling
from asearcher.utils.placement import engine_actor_options, engine_placement

log = logging.getLogger(__name__)

VLLM_HINT = (
    "vLLM is not installed: engine.kind=vllm needs a CUDA machine with `pip install vllm==0.32.0` "
    "(see docs/engines.md); on CPU use engine.kind=transformers"
)


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise UserFacingError(VLLM_HINT)


def vllm_parallel_kwargs(tensor_parallel_size: int) -> dict[str, Any]:
    """Engine arguments for tensor parallelism: vLLM's multiprocessing executor, on the GPUs this process holds.

    Left to itself vLLM picks its Ray executor whenever it runs inside a Ray placement group (where rollout workers
    run); that executor starts tensor_parallel_size GPU actors of its own, a second reservation of the GPUs the
    worker already holds, which Ray can never grant on a full allocation."""
    return {"distributed_executor_backend": "mp"} if tensor_parallel_size > 1 else {}


# ---- pure conversions (unit-tested without vLLM) -------------------------------------------------------------------
def to_vllm_sampling_kwargs(
    s: SamplingParams, max_tokens: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams` that reproduce our SamplingParams."""
    greedy = s.greedy or s.temperature <= 0
    return {
        "n": 1,
        "max_tokens": max_tokens if max_tokens is not None else s.max_new_tokens,
        "temperature": 0.0 if greedy else float(s.temperature),
        "top_p": 1.0 if greedy else float(s.top_p),
        "top_k": -1 if greedy or s.top_k <= 0 else int(s.top_k),
        "stop": list(s.stop) or None,
        "stop_token_ids": list(s.stop_token_ids) or None,
        "include_stop_str_in_output": True,  # the suite keeps the stop string in the output
        "seed": s.seed if seed is None else seed,
        "logprobs": 0,  # 0 = only the sampled token's logprob
        "skip_special_tokens": True,
        "detokenize": True,
    }


@dataclass
class Segment:
    """What one vLLM submission produced before it finished or was interrupted."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str | None  # None while unfinished; "abort" when interrupted
    stop_reason: str | int | None = None
    text: str = ""


def segment_from_output(completion: Any) -> Segment:
    """Convert a vLLM CompletionOutput (token_ids, logprobs: list of {token_id: Logprob}, finish_reason...)."""
    ids = [int(t) for t in completion.token_ids]
    lps: list[float] = []
    for tok, entry in zip(ids, completion.logprobs or [], strict=False):  # a length mismatch is raised below
        lp = entry.get(tok) if isinstance(entry, dict) else None
        lps.append(float(getattr(lp, "logprob", lp)) if lp is not None else float("nan"))
    if len(lps) != len(ids):  # missing logprobs are an engine misconfiguration, never silently zero
        raise RuntimeError(
            f"vLLM returned {len(lps)} logprobs for {len(ids)} tokens (logprobs must be requested)"
        )
    return Segment(ids, lps, completion.finish_reason, getattr(completion, "stop_reason", None),
                   getattr(completion, "text", "") or "")  # fmt: skip


@dataclass
class Continuation:
    """Accumulates segments of one request across interruptions."""

    prompt: list[int]
    sampling: SamplingParams
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    text: str = ""
    interruptions: int = 0

    def add(self, seg: Segment, version: int) -> None:
        self.out += seg.token_ids
        self.logprobs += seg.logprobs
        self.versions += [version] * len(seg.token_ids)
        self.text += seg.text

    @property
    def remaining(self) -> int:
        return self.sampling.max_new_tokens - len(self.out)

    def next_prompt(self) -> list[int]:
        return self.prompt + self.out

    def next_seed(self) -> int | None:
        # a fresh (but reproducible) stream after each interruption, not a replay of the first segment's draws
        s = self.sampling.seed
        return None if s is None else (s + 1_000_003 * self.interruptions) % (1 << 63)

    def result(self, finish_reason: str, stop_reason: Any, latency: float) -> GenerationResult:
        stop_string = stop_reason if isinstance(stop_reason, str) else None
        return GenerationResult(
            output_ids=self.out, output_logprobs=self.logprobs, output_versions=self.versions,
            finish_reason=finish_reason if finish_reason in ("stop", "length", "abort") else "stop",
            stop_string=stop_string, text=self.text, latency_s=latency,
        )  # fmt: skip


# ---- the actor ---------------------------------------------------------------------------------------------------
def _load_weights_on_worker(worker: Any, weights: Any) -> None:
    """Runs inside every vLLM worker (collective_rpc): stream (name, tensor) pairs into the model."""
    items = weights.items() if isinstance(weights, dict) else weights
    worker.model_runner.model.load_weights(weights=iter(items))


def receive_on_worker(worker: Any, update: dict[str, Any]) -> int:
    """Inside one vLLM worker: join the weight group as rank update.rank + the worker's rank (tensor parallel:
    every rank receives the whole model, load_weights keeps its shard), load each bucket as it arrives. Returns
    the number of tensors loaded."""
    from asearcher.llm.weight_broadcast import join_group, receive_buckets, update_from_dict

    u = update_from_dict(update)
    rank = u.rank + int(getattr(worker, "rank", 0))
    pg = join_group(u.group, rank)
    device = str(worker.device) if u.group.backend == "nccl" else "cpu"
    model = worker.model_runner.model
    n = 0
    for part in receive_buckets(pg, u.layout, device):
        model.load_weights(weights=iter(part))
        n += len(part)
    return n


class WeightReceiverExtension:
    """vLLM worker extension (`worker_extension_cls`): methods vLLM mixes into its worker class, for collective_rpc."""

    def asearcher_receive_weights(self, update: dict[str, Any]) -> int:
        return receive_on_worker(self, update)


WORKER_EXTENSION = f"{__name__}.WeightReceiverExtension"


class VLLMEngineActorImpl:
    """The vLLM engine and the abort-and-continue logic; wrapped as a Ray actor by `VLLMEngineActor`."""

    def __init__(self, model: str, version: int = 0, **engine_kwargs: Any):
        self.engine = self._create_engine(model, engine_kwargs)
        self.version = version
        self._open = asyncio.Event()  # cleared while weights are being replaced: new segments wait
        self._open.set()
        self._running: set[str] = set()  # vLLM request ids of segments in flight
        self._interrupted: set[str] = set()

    def _create_engine(self, model: str, engine_kwargs: dict[str, Any]) -> Any:
        if importlib.util.find_spec("vllm") is None:
            raise UserFacingError(VLLM_HINT)
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        engine_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        engine_kwargs.setdefault("worker_extension_cls", WORKER_EXTENSION)  # broadcast weight updates
        return AsyncLLM.from_engine_args(AsyncEngineArgs(model=model, **engine_kwargs))

    def receiver_info(self) -> dict[str, Any]:
        """How this engine joins a weight broadcast: one rank per tensor-parallel worker, in the model's dtype."""
        from asearcher.llm.weight_broadcast import dtype_name

        config = self.engine.model_config
        tp = int(getattr(self.engine.vllm_config.parallel_config, "tensor_parallel_size", 1))
        return {"ranks": tp, "dtype": dtype_name(config.dtype), "device": "cuda"}

    def _request(self, prompt: list[int], sp_kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """vLLM's prompt and sampling objects; CUMULATIVE output so an aborted stream still has its tokens."""
        from vllm import SamplingParams as VSamplingParams
        from vllm import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        sp = VSamplingParams(**sp_kwargs, output_kind=RequestOutputKind.CUMULATIVE)
        return TokensPrompt(prompt_token_ids=prompt), sp

    def get_version(self) -> int:
        return self.version

    async def _segment(self, prompt: list[int], sp_kwargs: dict[str, Any]) -> tuple[Segment, bool, int]:
        """Run one submission; returns (segment, interrupted, the weight version that produced it)."""
        await self._open.wait()
        version = self.version  # read after the wait: an update may have just finished
        rid = uuid.uuid4().hex
        prompt_obj, sp = self._request(prompt, sp_kwargs)
        last = None
        self._running.add(rid)
        try:
            async for out in self.engine.generate(prompt_obj, sp, request_id=rid):
                last = out.outputs[0]
        finally:
            self._running.discard(rid)
        interrupted = rid in self._interrupted
        self._interrupted.discard(rid)
        seg = (
            segment_from_output(last)
            if last is not None
            else Segment([], [], "abort" if interrupted else None)
        )
        if interrupted:
            seg.finish_reason = "abort"
        return seg, interrupted, version

    async def generate(self, input_ids: list[int], sampling: dict[str, Any]) -> dict[str, Any]:
        s = sampling_from_dict(sampling)
        t0 = time.perf_counter()
        cont = Continuation(list(input_ids), s)
        while True:
            kwargs = to_vllm_sampling_kwargs(s, max_tokens=cont.remaining, seed=cont.next_seed())
            seg, interrupted, version = await self._segment(cont.next_prompt(), kwargs)
            cont.add(seg, version)
            if interrupted and cont.remaining > 0:
                cont.interruptions += 1
                continue
            finish = "length" if interrupted else (seg.finish_reason or "stop")
            return asdict(cont.result(finish, seg.stop_reason, time.perf_counter() - t0))

    async def update_weights(self, weights: Any, version: int) -> int:
        """Abort in-flight segments, load weights on every worker, reset the prefix cache, bump the version."""
        self._open.clear()
        try:
            running = list(self._running)
            self._interrupted.update(running)
            if running:
                await self.engine.abort(running)
            while self._running:  # wait until every aborted stream has returned its partial output
                await asyncio.sleep(0.01)
            from asearcher.llm.weight_broadcast import BroadcastUpdate, update_to_dict

            if isinstance(weights, BroadcastUpdate):  # every worker receives the buckets and loads them
                await self.engine.collective_rpc("asearcher_receive_weights", args=(update_to_dict(weights),))
            else:
                if isinstance(weights, str):
                    from asearcher.llm.hf_weights import load_state_dict_from_dir

                    # off the event loop: in a rollout worker the agents and tools share it
                    weights = await asyncio.to_thread(load_state_dict_from_dir, weights)
                await self.engine.collective_rpc(_load_weights_on_worker, args=(weights,))
            await self.engine.reset_prefix_cache()
            self.version = version
        finally:
            self._open.set()
        return self.version

    def shutdown(self) -> None:
        self.engine.shutdown()


def _actor_class() -> Any:
    import ray

    return ray.remote(VLLMEngineActorImpl)


class VLLMEngine(InferenceEngine):
    """InferenceEngine on vLLM, run where its GPUs are reserved (see the module docstring).

    placement: 'auto' (in this process when it holds exactly tensor_parallel_size GPUs from Ray, else an actor that
    reserves them), 'in_process' or 'actor'. The chosen one is `self.placement`."""

    def __init__(
        self,
        model: str,
        tokenizer: Any = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int = 32768,
        dtype: str = "auto",
        logprobs_mode: str = "processed_logprobs",
        seed: int = 0,
        actor_options: dict[str, Any] | None = None,
        placement: str = "auto",
    ):
        require_vllm()
        from transformers import AutoTokenizer

        if placement not in ("auto", "in_process", "actor"):
            raise ValueError(f"placement must be auto, in_process or actor, not {placement!r}")
        self.placement = engine_placement(tensor_parallel_size) if placement == "auto" else placement
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model)
        kwargs: dict[str, Any] = dict(
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, dtype=dtype, logprobs_mode=logprobs_mode, seed=seed,
            **vllm_parallel_kwargs(tensor_parallel_size),
        )  # fmt: skip
        self._impl: VLLMEngineActorImpl | None = None
        self._actor: Any = None
        if self.placement == "in_process":  # this process holds the GPUs: no second reservation
            self._impl = VLLMEngineActorImpl(model, **kwargs)
            self._version = self._impl.version
            return
        import ray

        from asearcher.utils.ray_start import ensure_ray

        ensure_ray()
        have = ray.cluster_resources().get("GPU", 0.0)
        if have < tensor_parallel_size:  # Ray would wait forever for the actor's GPUs
            raise UserFacingError(
                f"the vLLM engine needs engine.tensor_parallel_size={tensor_parallel_size} GPUs but the Ray cluster "
                f"has {have:g}: run it on a machine (or allocation, cluster.eval_gpus) with that many GPUs"
            )
        opts = {
            **engine_actor_options(tensor_parallel_size),
            "max_concurrency": 4096,
            **(actor_options or {}),
        }
        self._actor = _actor_class().options(**opts).remote(model, **kwargs)
        self._version = ray.get(self._actor.get_version.remote())

    @property
    def version(self) -> int:
        return self._version

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        validate_sampling(request.sampling)
        ids, sampling = list(request.input_ids), asdict(request.sampling)
        if self._impl is not None:
            d = await self._impl.generate(ids, sampling)
        else:
            d = await self._actor.generate.remote(ids, sampling)
        res = GenerationResult(**d)
        if res.text is None or res.text == "":
            res.text = self.tokenizer.decode(res.output_ids, skip_special_tokens=True)
        return res

    def weight_receiver(self) -> dict[str, Any]:
        if self._impl is not None:
            return self._impl.receiver_info()
        import ray

        return ray.get(self._actor.receiver_info.remote())

    async def update_weights(self, state_dict: dict[str, Any] | str | Any, version: int) -> None:
        if self._impl is not None:
            self._version = await self._impl.update_weights(state_dict, version)
        else:
            self._version = await self._actor.update_weights.remote(state_dict, version)

    async def aclose(self) -> None:
        if self._impl is not None:
            self._impl.shutdown()
            return
        import ray

        try:
            await self._actor.shutdown.remote()
        finally:
            ray.kill(self._actor)


# The Ray actor class, created on first use (importing this module must not need Ray or vLLM).
def __getattr__(name: str) -> Any:
    if name == "VLLMEngineActor":
        return _actor_class()
    raise AttributeError(name)
