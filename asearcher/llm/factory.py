"""Build the configured inference engine (`engine:` config section, one entry of `models:`, or a judge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.llm.engine import InferenceEngine
from asearcher.utils.registry import Registry

#: engine kind -> builder(cfg); heavy imports happen inside the builder of the chosen kind only
ENGINES: Registry[Any] = Registry("engine kind", key="engine.kind")


@ENGINES("transformers")
def _transformers(cfg: Any) -> InferenceEngine:
    from asearcher.llm.transformers_engine import TransformersEngine

    if not Path(cfg.model).is_dir():
        raise UserFacingError(
            f"engine.model: {cfg.model} is not a model directory (kind=transformers loads local HF dirs; "
            "build the tiny model with `asearcher tiny-model`, or download a model first)"
        )
    return TransformersEngine(
        cfg.model,
        device=cfg.device,
        max_batch_size=cfg.max_batch_size,
        dtype=cfg.dtype,
        join_every=cfg.join_every,
        prefix_cache_tokens=cfg.prefix_cache_tokens,
    )


@ENGINES("openai")
def _openai(cfg: Any) -> InferenceEngine:
    from asearcher.llm.openai_engine import OpenAIEngine

    if not cfg.base_url:
        raise UserFacingError(
            "engine.base_url is required for kind=openai (e.g. http://127.0.0.1:8000/v1 from `asearcher serve-llm`)"
        )
    tokenizer = cfg.tokenizer or (cfg.model if Path(cfg.model).is_dir() else None)
    return OpenAIEngine(
        cfg.base_url, cfg.model, tokenizer=tokenizer, api=cfg.api, api_key_env=cfg.api_key_env,
        timeout=cfg.request_timeout_s, max_retries=cfg.max_retries,
    )  # fmt: skip


@ENGINES("vllm")
def _vllm(cfg: Any) -> InferenceEngine:
    from asearcher.llm.vllm_engine import VLLMEngine

    return VLLMEngine(
        cfg.model, tensor_parallel_size=cfg.tensor_parallel_size, gpu_memory_utilization=cfg.gpu_memory_utilization,
        max_model_len=cfg.max_model_len, dtype=cfg.dtype, logprobs_mode=cfg.logprobs_mode,
    )  # fmt: skip


def make_engine(cfg: Any, *, key: str = "engine.kind") -> InferenceEngine:
    """An InferenceEngine for an EngineConfig; `key` names the config key in an unknown-kind error."""
    return ENGINES.get(cfg.kind, key=key)(cfg)
