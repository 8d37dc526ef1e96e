"""The one interface every inference engine implements: token ids in, token ids + logprobs out, async.

Engines: `transformers_engine.TransformersEngine` (CPU/GPU, in-process), `vllm_engine.VLLMEngine` (GPU, Ray
actor), `openai_engine.OpenAIEngine` (any OpenAI-compatible server). Agents and RL rollout workers only see
this interface, so the same agent code runs on a laptop and a cluster.

Interruptible generation (for asynchronous RL): `update_weights` may be called while requests are in flight.
An engine that supports it pauses decoding, swaps the weights, bumps `version`, and continues every in-flight
request under the new weights; each generated token records the policy version that produced it
(`GenerationResult.output_versions`). Engines that cannot (OpenAI endpoints) raise NotImplementedError.

Weights arrive as a state dict, a path to an HF checkpoint dir, or an `asearcher.llm.weight_broadcast.BroadcastUpdate`
(rl.weight_sync: broadcast): the engine joins the trainer's weight group and receives the version's buckets.
Engines that can receive one say how in `weight_receiver()`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SamplingParams:
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 = disabled
    stop: list[str] = field(default_factory=list)  # stop strings; the stop string is kept in the output
    stop_token_ids: list[int] = field(default_factory=list)  # in addition to the tokenizer's eos
    seed: int | None = None  # per-request seed for reproducible sampling
    greedy: bool = False


@dataclass
class GenerationRequest:
    input_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    rid: str | None = None  # trajectory id: requests of one trajectory share it (routing / KV reuse)


@dataclass
class GenerationResult:
    output_ids: list[int]
    output_logprobs: list[
        float
    ]  # behaviour logprob of each output token under the sampling distribution's model
    output_versions: list[int]  # policy version that produced each output token
    finish_reason: str  # "stop" (eos or stop string/token), "length", or "abort"
    stop_string: str | None = None  # the stop string that ended generation, if any
    text: str | None = None  # decoded output (engines fill it; tokens stay the source of truth)
    latency_s: float = 0.0
    # True when output_ids were recovered by re-tokenizing text (an endpoint that returns no ids): then ids and
    # logprobs are approximate and must not be trained on
    retokenized: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_ids": self.output_ids,
            "output_logprobs": self.output_logprobs,
            "output_versions": self.output_versions,
            "finish_reason": self.finish_reason,
            "stop_string": self.stop_string,
            "text": self.text,
            "latency_s": self.latency_s,
            "retokenized": self.retokenized,
        }


class InferenceEngine(abc.ABC):
    """Async generation over token ids. Thread-safe to call from one asyncio loop with many tasks in flight."""

    #: a Hugging Face tokenizer (encode/decode/chat templates); agents build prompts with it
    tokenizer: Any

    @property
    @abc.abstractmethod
    def version(self) -> int:
        """The policy version (weight version) currently loaded."""

    @abc.abstractmethod
    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        """Generate a continuation of request.input_ids."""

    async def update_weights(self, state_dict: dict[str, Any] | str | Any, version: int) -> None:
        """Load new weights (a state dict, a path to an HF checkpoint dir, or a BroadcastUpdate) and set `version`."""
        raise NotImplementedError(f"{type(self).__name__} does not support weight updates")

    def weight_receiver(self) -> dict[str, Any] | None:
        """How this engine joins a weight broadcast: {"ranks": receivers it brings (1, or its tensor-parallel
        workers), "dtype": its weights' dtype name, "device": "cpu" | "cuda"}. None: it cannot receive one."""
        return None

    async def aclose(self) -> None:  # noqa: B027 (optional hook: engines without resources keep it)
        """Release resources (threads, servers, GPU memory)."""
