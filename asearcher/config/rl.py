"""Fully asynchronous RL."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class OptimConfig(Section):
    lr: float = Field(5e-6, gt=0, description="Adam learning rate (paper: 5e-6).")
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9)
    beta2: float = Field(0.999)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    warmup_steps: int = Field(0, ge=0)


class SFTConfig(Section):
    enabled: bool = Field(
        False,
        description="Warm-start by supervised fine-tuning on oracle trajectories before RL "
        "(a CPU-smoke-only deviation from the paper, which starts RL from the base model).",
    )
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, ge=1)
    max_questions: int = Field(200, ge=1)
    rl_on_answerable: bool = Field(
        False,
        description="Train RL only on the questions the oracle answered from the retrieved text (SFT output "
        "answerable.jsonl): a CPU-smoke choice, because a small corpus sample answers few training questions.",
    )
    distractor_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of oracle questions that also get a distractor twin trajectory (same search, a wrong "
        "string of the same results cited and answered): the warm-started model then knows the format but is split "
        "between right and wrong candidates, which RL resolves from the reward (CPU smoke).",
    )


class SaveRolloutsConfig(Section):
    enabled: bool = Field(
        True,
        description="Save a sample of each policy version's trained trajectories to "
        "OUTPUT/rollouts/v{version:05d}.jsonl.gz (the data of the paper's Fig. 6, 9, 10, 11).",
    )
    per_version: int = Field(
        8,
        ge=0,
        description="Trajectories saved per saved version, taken round-robin over the batch's groups "
        "(0 = none; batch_size x group_size or more = the whole batch).",
    )
    every: int = Field(1, ge=1, description="Save every N-th policy version (v0, vN, v2N, ...).")
    tool_results: bool = Field(
        False,
        description="Also save the tool results (search hits, page text); large. Without it a search records "
        "its URLs and a page access the page's length.",
    )


class RLConfig(Section):
    enabled: bool = Field(
        True,
        description="Run the RL stage (`asearcher train`) in the DAG. When false, the training metrics are "
        "not a target and models that are this run's RL output are not evaluated.",
    )
    train_file: str = Field(
        "ASearcher-Base-35k.jsonl", description="Training QA file inside the ASearcher-train-data release."
    )
    train_source: Literal["released", "synthesized", "both"] = Field(
        "released",
        description="What RL trains on: 'released': rl.train_file of the train-data release; 'synthesized': the "
        "synth stage's train.jsonl (needs synth.enabled); 'both': the two together.",
    )
    max_questions: int | None = Field(None, ge=1, description="Use only the first N training questions.")
    steps: int = Field(300, ge=1, description="Trainer steps (weight versions) to run.")
    batch_size: int = Field(
        128, ge=1, description="Questions (groups) per training step (paper: 128; QwQ: 64)."
    )
    group_size: int = Field(16, ge=1, description="Trajectories per question (n_trajs; paper code: 16).")
    max_head_offpolicyness: int = Field(
        4, ge=0, description="Staleness bound eta, enforced as admission control; 0 = synchronous RL."
    )
    max_concurrent_rollouts: int = Field(
        128, ge=1, description="Questions in flight across all rollout workers."
    )
    rollout_workers: int = Field(
        1, ge=1, description="Rollout worker actors (each hosts an inference engine)."
    )
    temperature: float = Field(1.0, ge=0)
    advantage: Literal["areal", "grpo"] = Field(
        "areal",
        description="'areal': upstream code ((r - group mean + bias) * scale, clip, global token z-norm); "
        "'grpo': the paper's Eq. 1 (group-normalised, per-trajectory token mean).",
    )
    reward: Literal["f1", "em", "judge"] = Field(
        "f1", description="Reward function (x format reward for f1/em)."
    )
    reward_scaling: float = Field(10.0)
    reward_bias: float = Field(-0.5)
    reward_clip: float = Field(20.0, gt=0)
    eps_clip: float = Field(0.4, gt=0, description="PPO clip epsilon.")
    behav_imp_weight_cap: float | None = Field(
        5.0, gt=0, description="Mask tokens whose behaviour weight exceeds this."
    )
    use_decoupled_loss: bool = Field(
        True, description="Decoupled PPO: proximal logprobs recomputed by the trainer."
    )
    kl_coef: float = Field(0.0, ge=0, description="KL penalty (paper: none).")
    ppo_minibatches: int = Field(1, ge=1)
    dynamic_filtering: bool = Field(True, description="Drop groups whose rewards are all equal.")
    invalid_penalty: float = Field(
        -0.5, description="Score of an 'invalid question' answer under the valid instruction."
    )
    backend: Literal["torch", "deepspeed"] = Field(
        "torch", description="Trainer: plain torch or DeepSpeed ZeRO-3."
    )
    zero_stage: int = Field(3, ge=0, le=3)
    trainer_gpus: int = Field(0, ge=0, description="GPUs for the trainer (0 = CPU).")
    rollout_gpus: int = Field(0, ge=0, description="GPUs for rollout engines (0 = CPU).")
    weight_sync: Literal["object_store", "disk", "broadcast", "nccl"] = Field(
        "object_store",
        description="How new weights reach the rollout engines. 'object_store': one ray.put per version (CPU "
        "default); 'disk': an HF dir in the model's dtype under OUTPUT/weight_updates (upstream); 'broadcast': in "
        "memory over a process group of the trainer and the engines, NCCL between GPUs, gloo otherwise (vLLM and "
        "transformers engines); 'nccl': broadcast that must use NCCL (an error without GPUs).",
    )
    weight_sync_bucket_mb: float = Field(
        256,
        gt=0,
        description="rl.weight_sync broadcast/nccl: tensors travel packed in flat buckets of this many MB (per "
        "dtype); the receivers hold two buckets in flight, a ZeRO-3 trainer gathers about one at a time.",
    )
    weight_sync_timeout_s: float = Field(
        600,
        gt=0,
        description="rl.weight_sync broadcast/nccl: how long a member waits for the others (to form the group, or "
        "for a bucket) before the push fails.",
    )
    checkpoint_every: int = Field(10, ge=1, description="Save a resumable checkpoint every N steps.")
    gradient_checkpointing: bool = Field(False)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    save_rollouts: SaveRolloutsConfig = Field(default_factory=SaveRolloutsConfig)
    max_tokens_per_mb: int = Field(
        8192,
        ge=16,
        description="Trainer micro-batch budget in (padded) tokens; bounds activation memory. Gradients are "
        "accumulated over micro-batches, so the loss is identical for any value.",
    )
    pack_max_tokens: int | None = Field(
        None,
        ge=16,
        description="Longest packed training sequence (upstream: max_tokens_per_mb, 8000/28000). Output tokens past the cap "
        "are not trained (counted in the pack_truncated_tokens metric). "
        "null = max_tokens_per_mb.",
    )
    format_reward: bool = Field(
        True,
        description="Multiply the f1/em score by the binary format reward (upstream; not used with judge).",
    )
    aug_answer_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Weight w of the aug_answer blend: (1-w)*F1(ans) + w*max(F1(aug), F1(ans)) (upstream: 0.3).",
    )
    grpo_std_eps: float = Field(1e-6, gt=0, description="'grpo' advantage: epsilon added to the group std.")
    adv_norm_eps: float = Field(
        1e-5, gt=0, description="'areal' advantage: epsilon of the global token z-norm."
    )
    curriculum_min_tool_calls: int | None = Field(
        None,
        ge=1,
        description="Stage-2 curriculum (QwQ): train only on questions that need at least this many tool calls, i.e. "
        "that some trajectory solved and none solved with fewer; other groups are dropped like filtered ones.",
    )
