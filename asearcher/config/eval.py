"""Evaluation protocol."""

from __future__ import annotations

from pydantic import Field

from .base import Section


class JudgeConfig(Section):
    enabled: bool = Field(False, description="Score with an LLM judge (LasJ) in addition to string metrics.")
    kind: str = Field("openai", description="Engine kind for the judge: openai | transformers | vllm.")
    model: str = Field("Qwen/Qwen2.5-72B-Instruct", description="Judge model (paper: Qwen2.5-72B-Instruct).")
    base_url: str | None = Field(None, description="Judge endpoint for kind=openai.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the judge's API key.")
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(1024, ge=1)
    max_retries: int = Field(3, ge=0, description="Bounded retries on unparseable verdicts (upstream loops).")
    prompt: str = Field(
        "judge.txt",
        description="Judge prompt: a file in asearcher/eval/prompts/ or a path to your own template.",
    )
    concurrency: int = Field(32, ge=1, description="Judge calls in flight at once.")


class EvalConfig(Section):
    enabled: bool = Field(
        True, description="Run the eval stage in the DAG: every model in `models` x benchmark."
    )
    benchmarks: list[str] = Field(
        default_factory=lambda: ["Bamboogle", "HotpotQA_rand1000"],
        description="Benchmark names from the registry (asearcher/eval/benchmarks/*.yaml).",
    )
    k: int = Field(4, ge=1, description="Samples per question (Avg@k / Pass@k).")
    seed: int = Field(1, description="Base seed; the k sample seeds derive from it.")
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_samples: int | None = Field(
        None, ge=1, description="Evaluate only the first N questions per benchmark."
    )
    concurrency: int = Field(32, ge=1, description="Trajectories in flight at once.")
    metrics: list[str] = Field(
        default_factory=lambda: ["f1", "em", "cem"], description="String metrics computed per sample."
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
