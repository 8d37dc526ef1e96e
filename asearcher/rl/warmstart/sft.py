"""Warm-start a model by supervised fine-tuning on oracle search trajectories (CPU smoke default).

A randomly initialised tiny model never emits a well-formed <search>/<answer>, so RL from scratch would see
only zero rewards. This stage records oracle trajectories with the real base agent (see asearcher/rl/warmstart/oracle.py:
search the question, read the results, answer with a gold string found in them; questions whose gold is not in
the top-k text are skipped), then trains on the model's own turns (loss on generated tokens only, exactly the
token sequences the RL trainer would see). This is a deviation from the paper, which starts RL from the base
model; it exists so the CPU pipeline can show learning in minutes.

Needs a retrieval server: run it under `asearcher with-retrieval`, or set $ASEARCHER_RETRIEVAL_URL.

Example:
  asearcher with-retrieval --index results/index/bm25 --config configs/default.yaml -- \\
    asearcher sft --model results/models/tiny --train results/releases/ASearcher-train-data/ASearcher-Base-35k.jsonl \\
      --output results/cpu-default/sft/model --config configs/default.yaml

With rl.sft.distractor_rate > 0 a fraction of the questions also gets a distractor twin (same search, a wrong
string of the same results cited and answered; see asearcher/rl/warmstart/oracle.py), so the warm-started model knows the
format but is unsure which candidate is right, and RL has something to learn in a few steps.

Resumable: oracle trajectories are appended to <output>.work/oracle-<settings hash>.jsonl as they finish and
reused on rerun with the same model, agent settings, distractor rate and seed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from asearcher.agent.trajectory import Trajectory
from asearcher.config import SFTConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.rl.algo.batching import split_microbatches
from asearcher.rl.algo.logprobs import loss_positions, pad_batch, token_logprobs
from asearcher.rl.algo.packing import pack_trajectory
from asearcher.rl.algo.types import TrainSequence
from asearcher.rl.trainers.base import seed_everything
from asearcher.utils.atomic import atomic_dir
from asearcher.utils.jsonl import JsonlAppender, iter_jsonl, write_json, write_jsonl
from asearcher.utils.secrets import redact_obj

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model directory (HF format, with tokenizer)")
    p.add_argument("--train", required=True, help="training QA JSONL (ASearcher-Base-35k.jsonl layout)")
    p.add_argument("--output", required=True, help="output HF model directory")
    p.add_argument("--max-questions", type=int, help="override rl.sft.max_questions")
    p.add_argument("--epochs", type=int, help="override rl.sft.epochs")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--seed", type=int, help="seed (default: the config's seed)")


# ---- training -------------------------------------------------------------------------------------------------


def sft_sequences(trajs: Sequence[Trajectory], max_tokens: int | None = None) -> list[TrainSequence]:
    seqs = []
    for k, t in enumerate(trajs):
        for s in pack_trajectory(t, 0.0, max_tokens=max_tokens, traj_index=k):
            if s.loss_mask and s.loss_mask[0]:
                s.loss_mask[0] = 0
            seqs.append(s)
    return seqs


def train_sft(
    model: Any,
    seqs: Sequence[TrainSequence],
    cfg: SFTConfig,
    *,
    device: str = "cpu",
    seed: int = 0,
    max_tokens_per_mb: int = 8192,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Token-mean cross-entropy on loss tokens, AdamW, cfg.epochs epochs of shuffled batches. Returns
    per-epoch metrics (mean loss, token accuracy of the argmax prediction)."""
    from asearcher.utils.progress import progress as progress_bar

    seed_everything(seed)
    rng = random.Random(seed)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = []
    order = list(range(len(seqs)))
    n_batches = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    bar = progress_bar(total=cfg.epochs * n_batches, desc="sft", disable=not progress)
    for epoch in range(cfg.epochs):
        rng.shuffle(order)
        tot_loss = tot_tok = 0.0
        for b in range(n_batches):
            batch = [seqs[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            n_tok = sum(sum(s.loss_mask) for s in batch)
            if not n_tok:
                bar.update()
                continue
            opt.zero_grad(set_to_none=True)
            for micro in split_microbatches(batch, max_tokens_per_mb):
                ms = [batch[i] for i in micro]
                ids, att = pad_batch([s.input_ids for s in ms], device=device)
                pos = loss_positions(ms, ids.shape, device)
                lp, _ = token_logprobs(model, ids, att, 1.0, positions=pos)
                loss = -(lp * pos).sum() / n_tok
                loss.backward()
                tot_loss += float(loss.detach()) * n_tok
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot_tok += n_tok
            bar.update()
        m = {"epoch": float(epoch + 1), "loss": tot_loss / max(tot_tok, 1.0), "tokens": tot_tok}
        history.append(m)
        bar.set_postfix(loss=f"{m['loss']:.3f}")
        log.info("sft epoch %d: loss %.4f over %d tokens", epoch + 1, m["loss"], tot_tok)
    bar.close()
    model.eval()
    return history


# ---- the stage ------------------------------------------------------------------------------------------------


def _load_done(path: Path) -> dict[str, tuple[Trajectory | None, Trajectory | None]]:
    """{qid: (gold trajectory or None, distractor twin or None)} from the resumable oracle work file."""
    done: dict[str, tuple[Trajectory | None, Trajectory | None]] = {}
    if path.exists():
        for row in iter_jsonl(path, require=["qid"]):
            gold, twin = row.get("trajectory"), row.get("distractor")
            done[row["qid"]] = (
                Trajectory.from_dict(gold) if gold else None,
                Trajectory.from_dict(twin) if twin else None,
            )
    return done


def oracle_fingerprint(model_dir: Path, agent_cfg: Any, sft_cfg: SFTConfig, seed: int) -> str:
    """Names the oracle work file: recorded trajectories are reused only under the settings that made them."""
    key = json.dumps(
        {
            "model": str(model_dir),
            "agent": agent_cfg.model_dump(mode="json"),
            "distractor_rate": sft_cfg.distractor_rate,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:12]


async def collect_oracle(
    records,
    agent,
    tools,
    tokenizer,
    agent_cfg,
    work_file: Path,
    *,
    distractor_rate: float = 0.0,
    seed: int = 0,
) -> tuple[list[Trajectory], list[Trajectory], int]:
    """Oracle trajectories for records, resuming from work_file. Returns (gold trajectories, distractor twins,
    skipped question count)."""
    from asearcher.rl.warmstart.oracle import oracle_trajectories

    done = _load_done(work_file)
    todo = [r for r in records if r.id not in done]
    if done:
        log.info("oracle: %d questions already done in %s, %d to go", len(done), work_file, len(todo))
    with JsonlAppender(work_file) as out:

        def on_done(rec, traj, twin):
            row = {
                "qid": rec.id,
                "trajectory": traj.to_dict() if traj is not None else None,
                "distractor": twin.to_dict() if twin is not None else None,
            }
            out.append(redact_obj(row))  # tool errors may quote a response body that echoed a key
            done[rec.id] = (traj, twin)

        _, skipped = await oracle_trajectories(
            todo,
            agent,
            tools,
            tokenizer,
            topk=agent_cfg.topk,
            doc_max_chars=agent_cfg.doc_max_chars,
            max_new_tokens=agent_cfg.max_new_tokens,
            distractor_rate=distractor_rate,
            seed=seed,
            on_done=on_done,
        )
    reasons = Counter(skipped.values())
    if reasons:
        log.info("oracle: skipped this run: %s", ", ".join(f"{n} {why}" for why, n in reasons.most_common()))
    pairs = [done[r.id] for r in records if r.id in done]
    gold = [t for t, _ in pairs if t is not None]
    twins = [w for _, w in pairs if w is not None]
    return gold, twins, len(records) - len(gold)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asearcher.agent.registry import make_agent
    from asearcher.data.trainset import load_trainset
    from asearcher.tools.factory import make_tools

    cfg = load_config(args.config, args.overrides)
    # local tools over the server RetrievalClient.discover() finds ($ASEARCHER_RETRIEVAL_URL or the with-retrieval
    # address dir); a web backend is an error here, before any work
    tools = make_tools(cfg)
    sft_cfg = cfg.rl.sft
    if args.epochs is not None:
        sft_cfg = sft_cfg.model_copy(update={"epochs": args.epochs})
    max_q = args.max_questions or sft_cfg.max_questions
    seed = cfg.seed if args.seed is None else args.seed
    if cfg.agent.kind != "asearcher":
        raise UserFacingError(
            f"agent.kind is {cfg.agent.kind!r}: the oracle warm start renders the base agent's prompt format; "
            "set agent.kind: asearcher (or disable rl.sft.enabled)"
        )
    model_dir, output = Path(args.model), Path(args.output)
    if not (model_dir / "config.json").exists():
        raise UserFacingError(f"--model {model_dir}: not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = load_trainset(args.train, limit=max_q)
    agent = make_agent(cfg.agent, tokenizer, kind="asearcher")
    fingerprint = oracle_fingerprint(model_dir, cfg.agent, sft_cfg, seed)
    work_file = output.parent / f"{output.name}.work" / f"oracle-{fingerprint}.jsonl"
    t0 = time.time()

    async def collect():
        try:
            return await collect_oracle(
                records,
                agent,
                tools,
                tokenizer,
                cfg.agent,
                work_file,
                distractor_rate=sft_cfg.distractor_rate,
                seed=seed,
            )
        finally:
            await tools.aclose()

    trajs, twins, skipped = asyncio.run(collect())
    log.info(
        "oracle: %d trajectories (+%d distractor twins), %d of %d questions skipped, in %.1fs",
        len(trajs),
        len(twins),
        skipped,
        len(records),
        time.time() - t0,
    )
    if not trajs:
        raise UserFacingError(
            f"no oracle trajectories: none of the {len(records)} questions of {args.train} had a gold answer in "
            f"the top-{cfg.agent.topk} search results; check the retrieval index (corpus_limit) or raise "
            "agent.topk / --max-questions"
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    seqs = sft_sequences(trajs + twins, cfg.rl.pack_max_tokens or cfg.rl.max_tokens_per_mb)
    history = train_sft(
        model, seqs, sft_cfg, device=args.device, seed=seed, max_tokens_per_mb=cfg.rl.max_tokens_per_mb
    )
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "sft_metrics.json",
            {
                "base_model": str(model_dir),
                "train_file": str(args.train),
                "questions": len(records),
                "trajectories": len(trajs),
                "distractor_twins": len(twins),
                "distractor_rate": sft_cfg.distractor_rate,
                "skipped": skipped,
                "sequences": len(seqs),
                "loss_tokens": sum(sum(s.loss_mask) for s in seqs),
                "epochs": history,
                "seed": seed,
                "deviation": "SFT warm start on oracle trajectories (CPU smoke only; the paper starts RL from the base model)",
            },
        )
        # The questions the oracle could answer from the retrieved text, in the release's own row format: the CPU
        # default trains RL on these (rl.sft.rl_on_answerable), since a small corpus answers only some questions.
        answered = {t.qid for t in trajs}
        write_jsonl(
            tmp / "answerable.jsonl",
            [
                {
                    "qid": r.id,
                    "question": r.question,
                    "answer": r.answers,
                    "aug_answer": r.aug_answers,
                    "source": r.source,
                }
                for r in records
                if r.id in answered
            ],
        )
    print(
        json.dumps(
            {
                "output": str(output),
                "trajectories": len(trajs),
                "distractor_twins": len(twins),
                "skipped": skipped,
                "final_loss": history[-1]["loss"] if history else None,
            }
        )
    )
    return 0
