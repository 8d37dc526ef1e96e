"""The torch trainer backend: groups of scored trajectories in, one policy update out, in this process.

One train_step = pack trajectories into token sequences (algo.packing) -> advantages (algo.advantages) -> recompute
proximal logprobs with the current weights, no grad (algo.logprobs) -> decoupled PPO loss (algo.loss) over
`ppo_minibatches` minibatches, each accumulated over token-bounded micro-batches -> gradient clipping -> AdamW
step. Weights stay in float32 (this backend targets CPU and small GPUs; use the DeepSpeed backend at scale); what
leaves for the engines (save_hf, save_weights, the broadcast's wire dtype) is in the source model's dtype.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from asearcher.config import RLConfig
from asearcher.llm.weight_broadcast import unique_tensors
from asearcher.rl.algo.batching import (
    build_sequences,
    split_microbatches,
    split_minibatches,
    staleness_metrics,
)
from asearcher.rl.algo.logprobs import loss_positions, pad_batch, token_logprobs
from asearcher.rl.algo.loss import LossStats, decoupled_ppo_loss, token_weights
from asearcher.rl.algo.types import Group, TrainSequence
from asearcher.rl.trainers.base import (
    MODEL_SUBDIR,
    STATE_FILE,
    Trainer,
    load_tokenizer,
    rng_state,
    seed_everything,
    set_rng_state,
    source_dtype,
    warmup_lambda,
)
from asearcher.utils.atomic import atomic_dir


class TorchTrainer(Trainer):
    """The whole policy in this process (CPU or one GPU), float32 weights, AdamW."""

    def __init__(self, model_path: str, cfg: RLConfig, *, device: str = "cpu", seed: int = 0):
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.device = torch.device(device)
        self.seed = seed
        self.version = 0
        self.model_path = str(model_path)
        self.save_dtype = source_dtype(self.model_path)  # exports keep the model's dtype (bf16 stays bf16)
        seed_everything(seed)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(
            self.device
        )
        if cfg.gradient_checkpointing:
            enable = (
                getattr(self.model, "activation_checkpointing_enable", None)
                or self.model.gradient_checkpointing_enable
            )
            enable()
        self.model.config.use_cache = False
        self.tokenizer = load_tokenizer(self.model_path)
        self.ref_model = None
        if cfg.kl_coef > 0:  # frozen initial policy as the KL reference
            self.ref_model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(
                self.device
            )
            self.ref_model.eval().requires_grad_(False)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_lambda(o.warmup_steps))
        #: test-only hook: multiplies the advantages (the learning test flips/zeroes the gradient sign with it)
        self.advantage_multiplier = 1.0

    # ---- helpers --------------------------------------------------------------------------------------------
    def _logprobs(self, model, seqs: Sequence[TrainSequence], grad: bool, entropy: bool = False):
        ids, att = pad_batch([s.input_ids for s in seqs], device=self.device)
        pos = loss_positions(seqs, ids.shape, self.device)  # the loss reads no other position
        with torch.set_grad_enabled(grad):
            return token_logprobs(model, ids, att, self.cfg.temperature, with_entropy=entropy, positions=pos)

    def _recompute(self, model, seqs: Sequence[TrainSequence]) -> list[torch.Tensor]:
        """Per-sequence logprobs under `model` (no grad), micro-batched."""
        out: list[torch.Tensor | None] = [None] * len(seqs)
        was_training = model.training
        model.eval()
        for mb in split_microbatches(seqs, self.cfg.max_tokens_per_mb):
            lp, _ = self._logprobs(model, [seqs[i] for i in mb], grad=False)
            for row, i in enumerate(mb):
                out[i] = lp[row, : len(seqs[i].input_ids)].detach().cpu()
        model.train(was_training)
        return out  # type: ignore[return-value]

    @staticmethod
    def _pad_rows(rows: Sequence[Sequence[float]] | Sequence[torch.Tensor], L: int, device) -> torch.Tensor:
        t = torch.zeros((len(rows), L), dtype=torch.float32)
        for i, r in enumerate(rows):
            r = torch.as_tensor(r, dtype=torch.float32)
            t[i, : len(r)] = r
        return t.to(device)

    # ---- API ------------------------------------------------------------------------------------------------
    def train_step(self, groups: list[Group]) -> dict[str, float]:
        t0 = time.perf_counter()
        cfg = self.cfg
        seqs, info = build_sequences(groups, cfg)
        for s in seqs:
            if s.loss_mask and s.loss_mask[0]:  # the first token has no context, hence no logprob
                s.loss_mask[0] = 0
            s.advantage *= self.advantage_multiplier
        metrics: dict[str, float] = dict(info)
        metrics.update(staleness_metrics(seqs, self.version))
        n_loss = sum(sum(s.loss_mask) for s in seqs)
        total = LossStats()
        loss_sum, ent_sum, grad_norms = 0.0, 0.0, []
        if n_loss:
            prox = self._recompute(self.model, seqs) if cfg.use_decoupled_loss else [None] * len(seqs)
            ref = self._recompute(self.ref_model, seqs) if self.ref_model is not None else [None] * len(seqs)
            index = {id(s): k for k, s in enumerate(seqs)}
            self.model.train()
            for mb_seqs in split_minibatches(seqs, cfg.ppo_minibatches):
                w = token_weights(mb_seqs, cfg.advantage)
                self.optimizer.zero_grad(set_to_none=True)
                for micro in split_microbatches(mb_seqs, cfg.max_tokens_per_mb):
                    ms = [mb_seqs[i] for i in micro]
                    if not any(sum(s.loss_mask) for s in ms):
                        continue
                    L = max(len(s.input_ids) for s in ms)
                    lp, ent = self._logprobs(self.model, ms, grad=True, entropy=True)
                    ks = [index[id(s)] for s in ms]
                    mask = self._pad_rows([s.loss_mask for s in ms], L, self.device)
                    loss, st = decoupled_ppo_loss(
                        lp,
                        self._pad_rows([prox[k] for k in ks], L, self.device)
                        if cfg.use_decoupled_loss
                        else None,
                        self._pad_rows([s.behav_logprobs for s in ms], L, self.device),
                        self._pad_rows([[s.advantage] * len(s.input_ids) for s in ms], L, self.device),
                        mask,
                        self._pad_rows([[w[i]] * len(mb_seqs[i].input_ids) for i in micro], L, self.device),
                        eps_clip=cfg.eps_clip,
                        behav_imp_weight_cap=cfg.behav_imp_weight_cap,
                        use_decoupled=cfg.use_decoupled_loss,
                        kl_coef=cfg.kl_coef,
                        ref_logp=self._pad_rows([ref[k] for k in ks], L, self.device)
                        if self.ref_model
                        else None,
                    )
                    loss.backward()
                    loss_sum += float(loss.detach())
                    ent_sum += float((ent * mask).sum())
                    total.add(st)
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                grad_norms.append(float(gn))
                self.optimizer.step()
            self.scheduler.step()
        self.version += 1
        n = max(total.n_tokens, 1.0)
        metrics.update(
            version=float(self.version),
            loss=loss_sum / max(1, len(grad_norms)),
            grad_norm=float(np.mean(grad_norms)) if grad_norms else 0.0,
            n_seqs=float(len(seqs)),
            n_tokens=float(n_loss),
            n_seq_tokens=float(sum(len(s.input_ids) for s in seqs)),
            clip_frac=total.clipped / n,
            behav_masked_frac=total.behav_masked / n,
            behav_weight_mean=total.behav_weight / max(1.0, total.n_tokens - total.behav_masked),
            ratio_mean=total.ratio / n,
            kl=total.kl / n,
            entropy=ent_sum / n,
            lr=float(self.scheduler.get_last_lr()[0]),
            train_s=time.perf_counter() - t0,
        )
        return metrics

    def get_weights(self) -> dict[str, torch.Tensor]:
        # clone: on CPU .cpu() aliases the live parameters, which the optimizer then mutates in place
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def iter_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        # the live tensors, no copy: the controller never sends while a train_step runs
        return unique_tensors(self.model.state_dict().items())

    def weight_device(self) -> str:
        return self.device.type

    def _save_model(self, path: Path) -> None:
        """The weights (in save_dtype; tied tensors stay shared, so written once) and config.json."""
        dtype = self.save_dtype
        cast: dict[tuple, torch.Tensor] = {}
        sd = {}
        for k, v in self.model.state_dict().items():
            key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            if key not in cast:
                cast[key] = v.detach().to("cpu", dtype)
            sd[k] = cast[key]
        self.model.save_pretrained(path, state_dict=sd)
        # save_pretrained writes the dtype of the live (float32) parameters into config.json: correct it
        config = self.model.config
        old, config.dtype = config.dtype, dtype
        try:
            config.save_pretrained(path)
        finally:
            config.dtype = old

    def save_hf(self, path: str | Path) -> None:
        with atomic_dir(path) as tmp:
            self._save_model(tmp)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)

    def save_weights(self, path: str | Path) -> None:
        with atomic_dir(path) as tmp:
            self._save_model(tmp)

    def save(self, path: str | Path) -> None:
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp / MODEL_SUBDIR)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp / MODEL_SUBDIR)
            torch.save(
                {
                    "version": self.version,
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_state(),
                    "seed": self.seed,
                },
                tmp / STATE_FILE,
            )

    def load(self, path: str | Path) -> None:
        from transformers import AutoModelForCausalLM

        path = Path(path)
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(
                f"{path}: not a trainer checkpoint (no {STATE_FILE}); was it written by save()?"
            )
        src = AutoModelForCausalLM.from_pretrained(path / MODEL_SUBDIR, dtype=torch.float32)
        self.model.load_state_dict(src.state_dict())
        del src
        st = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.version = int(st["version"])
        set_rng_state(st["rng"])
