"""Evaluation protocol."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .agent import AgentConfig
from .base import Section

#: Upstream's evaluation settings per agent kind (paper-notes §2.2, §2.5, §6.4: `evaluation/search_eval_async.py`
#: and its agents). The base agent is always told the question is valid (eval prompt since upstream PR #15),
#: runs up to 64 turns and gets `--max-tokens-per-call` 4096 per call; the reasoning (QwQ) agent runs up to 128
#: turns with the answer phase forced after 32 acts (its per-call budget, 31000 - prompt, is the agent's own rule);
#: Search-R1 runs up to 10 turns with 4096 tokens per call. Upstream has no direct-generation agent: `direct` (one
#: call) takes the agent section's values.
UPSTREAM_EVAL_AGENT: dict[str, dict[str, Any]] = {
    "asearcher": {"valid_instruction_prob": 1.0, "max_turns": 64, "max_new_tokens": 4096},
    "asearcher-reasoning": {"max_turns": 128, "force_answer_turns": 32},
    "search-r1": {"max_turns": 10, "max_new_tokens": 4096},
}


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
        description="Judge prompt: a file in asearcher/eval/prompts/ or a path to your own template. 'judge.txt' "
        "asks upstream's question (is the prediction equivalent to the labeled answer?); 'judge_strict.txt' "
        "adds rejection rules (vaguer/broader answers, several candidates).",
    )
    concurrency: int = Field(32, ge=1, description="Judge calls in flight at once.")


class EvalAgentConfig(Section):
    """Agent settings for evaluation only, applied on top of `agent` when `asearcher eval` builds its agent.

    A field left null takes upstream's evaluation value for `agent.kind` (UPSTREAM_EVAL_AGENT) when
    `defaults: upstream`, else the `agent` section's (training) value. A field set here always wins.
    """

    defaults: Literal["upstream", "agent"] = Field(
        "upstream",
        description="What null fields mean: 'upstream': upstream's evaluation protocol for agent.kind "
        "(asearcher: valid-question prompt, 64 turns, 4096 tokens a call; asearcher-reasoning: 128 turns, answer "
        "forced after 32 acts; search-r1: 10 turns, 4096 tokens a call); 'agent': the agent section's values "
        "(evaluate exactly as trained).",
    )
    valid_instruction_prob: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Probability that the prompt says the question is valid (upstream eval: 1, always).",
    )
    max_turns: int | None = Field(
        None,
        ge=1,
        description="Most LLM generations per trajectory (upstream eval: 64 / 128 QwQ / 10 Search-R1).",
    )
    max_new_tokens: int | None = Field(
        None, ge=1, description="Max tokens per LLM call (upstream eval: 4096 for asearcher and search-r1)."
    )
    max_context_tokens: int | None = Field(
        None, ge=64, description="Context of one call (null: the agent section's, a property of the model)."
    )
    min_searches: int | None = Field(
        None, ge=0, description="Reasoning agent: searches required before an answer counts."
    )
    force_answer_turns: int | None = Field(
        None,
        ge=1,
        description="Reasoning agent: after this many acts, force the answer phase (upstream: 32).",
    )

    def overrides(self, kind: str) -> dict[str, Any]:
        """The agent fields that evaluation sets for an agent of this kind."""
        out = dict(UPSTREAM_EVAL_AGENT.get(kind, {})) if self.defaults == "upstream" else {}
        out.update({k: v for k, v in self.model_dump(exclude={"defaults"}).items() if v is not None})
        return out

    def apply(self, agent: AgentConfig) -> AgentConfig:
        """The agent config evaluation runs: `agent` with these overrides. Keys the agent section left unset
        stay unset unless overridden (agents read a few defaults from that, e.g. Search-R1's 10 turns)."""
        data = agent.model_dump(exclude_unset=True)
        data.update(self.overrides(agent.kind))
        return AgentConfig.model_validate(data)


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
        default_factory=lambda: ["f1", "em", "cem"],
        description="String metrics computed per sample: f1, em, cem (exactly upstream's scorers), em_strict, "
        "cem_strict, squad_f1 (the project's refinements); 'judge' with eval.judge.enabled.",
    )
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    agent: EvalAgentConfig = Field(
        default_factory=EvalAgentConfig,
        description="Agent settings for evaluation, on top of `agent` (default: upstream's eval protocol).",
    )
    in_distribution: bool = Field(
        False,
        description="Also evaluate every model on the questions RL trained on (benchmark `train-questions`, "
        "flagged in-distribution in its protocol card): the SFT output's answerable.jsonl with "
        "rl.sft.rl_on_answerable, else rl.train_file (or the synthesized questions, per rl.train_source), with "
        "eval.k as configured and the agent as trained (eval.agent.defaults: agent). Runs with the rl stage.",
    )
    in_distribution_questions: int = Field(
        8,
        ge=1,
        description="How many of the training questions (the first N of the file) in_distribution uses.",
    )
