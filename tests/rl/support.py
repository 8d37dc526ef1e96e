"""Helpers for the RL algorithm/trainer tests (no tests here): a tiny Qwen2 model dir and synthetic groups."""

from __future__ import annotations

from pathlib import Path

import torch

from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.rl.algo.types import Group, ScoredTrajectory

VOCAB = 48


def make_tiny_model(
    path: Path, *, vocab: int = VOCAB, hidden: int = 32, layers: int = 1, seed: int = 0
) -> Path:
    """A random-init Qwen2 causal LM + a word-level tokenizer ("w0".."wN") saved as an HF dir."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=1,
        pad_token_id=0,
        bos_token_id=None,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    vocab_map = {"<pad>": 0, "<eos>": 1} | {f"w{i}": i for i in range(2, vocab)}
    tok = Tokenizer(models.WordLevel(vocab=vocab_map, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>").save_pretrained(path)
    return path


def llm(inp, out, lps=None, vers=None, text="") -> LLMCall:
    return LLMCall(
        input_ids=list(inp),
        output_ids=list(out),
        output_logprobs=list(lps) if lps is not None else [-1.0] * len(out),
        output_versions=list(vers) if vers is not None else [0] * len(out),
        finish_reason="stop",
        output_text=text,
    )


def traj(qid: str, calls, *, idx: int = 0, prediction: str | None = None, texts=None) -> Trajectory:
    t = Trajectory(qid=qid, question="q?", answers=["a"], agent="test", prompt_hash="h", sample_idx=idx)
    t.events = list(calls)
    t.prediction = prediction
    return t


def group(qid: str, trajs_rewards, submit_version: int = 0) -> Group:
    return Group(
        qid=qid,
        question="q?",
        answers=["a"],
        samples=[ScoredTrajectory(t, r) for t, r in trajs_rewards],
        submit_version=submit_version,
    )


def random_groups(
    n_groups: int, g: int, *, seed: int = 0, vocab: int = VOCAB, version: int = 0
) -> list[Group]:
    """Two-turn trajectories with an appended second call, random tokens/rewards."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for q in range(n_groups):
        items = []
        for i in range(g):
            p = torch.randint(2, vocab, (5,), generator=gen).tolist()
            o1 = torch.randint(2, vocab, (4,), generator=gen).tolist()
            obs = torch.randint(2, vocab, (3,), generator=gen).tolist()
            o2 = torch.randint(2, vocab, (3,), generator=gen).tolist()
            calls = [
                llm(p, o1, [-3.5] * 4, [version] * 4),
                ToolCall(tool="search", argument="x", ok=True),
                llm(p + o1 + obs, o2, [-3.5] * 3, [version] * 3),
            ]
            r = float(torch.rand((), generator=gen))
            items.append((traj(f"q{q}", calls, idx=i), r))
        out.append(group(f"q{q}", items))
    return out
