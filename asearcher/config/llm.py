"""Models and inference engines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class TinyModelConfig(Section):
    """A small random-init Qwen2-architecture model with a BPE tokenizer trained on the corpus (CPU default)."""

    vocab_size: int = Field(2048, ge=300, description="Target BPE vocabulary size.")
    hidden_size: int = Field(128, ge=16)
    intermediate_size: int = Field(256, ge=16)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    max_position_embeddings: int = Field(4096, ge=128)
    tokenizer_corpus_lines: int = Field(
        5000, ge=10, description="Corpus passages used to train the tokenizer."
    )
    seed: int = Field(0)


class EngineConfig(Section):
    kind: Literal["transformers", "vllm", "openai"] = Field(
        "transformers",
        description="'transformers': CPU/GPU engine in-process; 'vllm': vLLM (GPU, Ray actor); "
        "'openai': any OpenAI-compatible HTTP endpoint.",
    )
    model: str = Field(
        "results/models/tiny",
        description="Model directory or hub id ('tiny' factory output by default). For 'openai': the model name.",
    )
    base_url: str | None = Field(
        None, description="For kind=openai: the endpoint, e.g. http://127.0.0.1:8000/v1."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never stored in configs)."
    )
    api: Literal["completions", "chat"] = Field("completions", description="For kind=openai: which API.")
    max_batch_size: int = Field(32, ge=1, description="Most sequences decoded together.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM memory fraction.")
    max_model_len: int = Field(32768, ge=256, description="Context length of the engine.")
    request_timeout_s: float = Field(600.0, gt=0, description="For kind=openai: per-request timeout.")
    max_retries: int = Field(4, ge=0, description="For kind=openai: bounded retries with backoff.")
    tokenizer: str | None = Field(
        None,
        description="For kind=openai: a local HF tokenizer dir (text fallback, re-tokenizing, agent prompts); "
        "null = `model` when it is a local directory.",
    )
    device: str = Field("auto", description="For kind=transformers: cpu | cuda | auto (cuda when available).")
    join_every: int = Field(
        4,
        ge=1,
        description="For kind=transformers: decode steps between admissions of new requests into a busy batch.",
    )
    prefix_cache_tokens: int = Field(
        32768,
        ge=0,
        description="For kind=transformers: tokens of finished requests' KV kept so that a request extending an "
        "earlier one (an agent's next turn) prefills only the new tokens; cleared on every weight update. 0 = off. "
        "(vLLM: its own automatic prefix caching.)",
    )
    logprobs_mode: Literal["processed_logprobs", "raw_logprobs"] = Field(
        "processed_logprobs",
        description="For kind=vllm: which logprobs vLLM returns. 'processed_logprobs' = after temperature "
        "(equals the suite's convention when top_p=1 and top_k=-1); 'raw_logprobs' = T=1.",
    )
