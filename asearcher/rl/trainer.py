"""The RL trainer: groups of scored trajectories in, one policy update out.

API (stable; the asynchronous system in rl/{controller,train}.py depends on it):

    trainer = make_trainer(model_path, cfg.rl, device="cpu", seed=0)   # TorchTrainer or DeepSpeedTrainer
    metrics = trainer.train_step(groups)    # list[rl.types.Group] -> dict[str, float]; trainer.version += 1
    sd = trainer.get_weights()              # CPU state dict (a copy) for rollout engines
    trainer.save(dir); trainer.load(dir)    # resumable: model, optimizer, scheduler, version, RNG states
    trainer.save_hf(dir)                    # Hugging Face model dir (+ tokenizer) for evaluation / disk sync

One train_step = pack trajectories into token sequences (packing.py) -> advantages (advantages.py) -> recompute
proximal logprobs with the current weights, no grad (logprobs.py) -> decoupled PPO loss (loss.py) over
`ppo_minibatches` minibatches, each accumulated over token-bounded micro-batches -> gradient clipping -> AdamW
step. Weights stay in float32 (this backend targets CPU and small GPUs; use the DeepSpeed backend at scale).
"""

from __future__ import annotations

import abc
import logging
import os
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asearcher.config import RLConfig
from asearcher.rl.advantages import assign_advantages
from asearcher.rl.logprobs import pad_batch, token_logprobs
from asearcher.rl.loss import LossStats, decoupled_ppo_loss, token_weights
from asearcher.rl.packing import PackStats, pack_trajectory
from asearcher.rl.types import Group, TrainSequence

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
MODEL_SUBDIR = "model"


class Trainer(abc.ABC):
    """Backend-independent trainer interface (see module docstring)."""

    version: int

    @abc.abstractmethod
    def train_step(self, groups: list[Group]) -> dict[str, float]:
        """One policy update on these groups; version += 1. Returns metrics."""

    @abc.abstractmethod
    def get_weights(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the model's state dict (safe to ship while training continues)."""

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Resumable checkpoint directory (written atomically)."""

    @abc.abstractmethod
    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by save()."""

    @abc.abstractmethod
    def save_hf(self, path: str | Path) -> None:
        """Hugging Face model directory (+ tokenizer when the source model had one)."""

    def close(self) -> None:  # noqa: B027 - optional hook; the torch backend holds nothing to release
        """Release workers / devices."""


# ---- batch preparation (shared by the backends) -----------------------------------------------------------------


def build_sequences(groups: Sequence[Group], cfg: RLConfig) -> tuple[list[TrainSequence], dict[str, float]]:
    """Pack every trajectory of every group and assign advantages. Returns (sequences, metrics)."""
    if not groups:
        raise ValueError("train_step needs at least one group")
    cap = cfg.pack_max_tokens or cfg.max_tokens_per_mb
    seqs: list[TrainSequence] = []
    keys: list[tuple[int, int]] = []
    stats = PackStats()
    t_index = 0
    for g, grp in enumerate(groups):
        for i, st in enumerate(grp.samples):
            for s in pack_trajectory(st.trajectory, st.reward, max_tokens=cap, traj_index=t_index, stats=stats):
                seqs.append(s)
                keys.append((g, i))
            t_index += 1
    info = assign_advantages(seqs, [grp.rewards for grp in groups], keys, cfg)
    rewards = [r for grp in groups for r in grp.rewards]
    info.update(
        n_groups=float(len(groups)),
        n_trajs=float(t_index),
        reward_mean=float(np.mean(rewards)) if rewards else 0.0,
        pack_truncated_tokens=float(stats.truncated_tokens),
        pack_skipped_calls=float(len(stats.skipped_calls)),
        pack_appended_calls=float(stats.appended_calls),
    )
    return seqs, info


def split_minibatches(seqs: Sequence[TrainSequence], n: int) -> list[list[TrainSequence]]:
    """n minibatches of whole trajectories (a trajectory's sequences stay together), in order."""
    trajs: dict[int, list[TrainSequence]] = {}
    for s in seqs:
        trajs.setdefault(s.traj_index, []).append(s)
    order = list(trajs)
    n = max(1, min(n, len(order)))
    out: list[list[TrainSequence]] = [[] for _ in range(n)]
    for k, t in enumerate(order):
        out[k * n // len(order)].extend(trajs[t])
    return [m for m in out if m]


def split_microbatches(seqs: Sequence[Any], max_tokens: int, length=lambda s: len(s.input_ids)) -> list[list[int]]:
    """Indices grouped so that (rows x longest row) <= max_tokens; a longer row goes alone. Sorted by length so
    padding waste stays small."""
    order = sorted(range(len(seqs)), key=lambda i: -length(seqs[i]))
    mbs: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        n = length(seqs[i])
        if cur and max(cur_max, n) * (len(cur) + 1) > max_tokens:
            mbs.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        mbs.append(cur)
    return mbs


def staleness_metrics(seqs: Sequence[TrainSequence], version: int) -> dict[str, float]:
    """How many versions behind the trainer each generated token's policy was (unknown versions -1 skipped)."""
    st = [version - v for s in seqs for v, m in zip(s.versions, s.loss_mask, strict=True) if m and v >= 0]
    if not st:
        return {"staleness_mean": 0.0, "staleness_max": 0.0, "staleness_known_frac": 0.0}
    n = sum(sum(s.loss_mask) for s in seqs)
    return {
        "staleness_mean": float(np.mean(st)),
        "staleness_max": float(max(st)),
        "staleness_known_frac": len(st) / max(1, n),
    }


def _atomic_dir(path: Path):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _commit_dir(tmp: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def rng_state() -> dict[str, Any]:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_tokenizer(model_path: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path)
    except Exception as e:  # a bare weights dir is fine for training; save_hf then writes no tokenizer
        log.warning("no tokenizer loadable from %s (%s); save_hf will write the model only", model_path, e)
        return None


def warmup_lambda(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


# ---- the torch backend ---------------------------------------------------------------------------------------------


class TorchTrainer(Trainer):
    def __init__(self, model_path: str, cfg: RLConfig, *, device: str = "cpu", seed: int = 0):
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.device = torch.device(device)
        self.seed = seed
        self.version = 0
        self.model_path = str(model_path)
        seed_everything(seed)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32).to(self.device)
        if cfg.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None) or self.model.gradient_checkpointing_enable
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
        if grad:
            return token_logprobs(model, ids, att, self.cfg.temperature, with_entropy=entropy)
        with torch.no_grad():
            return token_logprobs(model, ids, att, self.cfg.temperature, with_entropy=entropy)

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
                        self._pad_rows([prox[k] for k in ks], L, self.device) if cfg.use_decoupled_loss else None,
                        self._pad_rows([s.behav_logprobs for s in ms], L, self.device),
                        self._pad_rows([[s.advantage] * len(s.input_ids) for s in ms], L, self.device),
                        mask,
                        self._pad_rows([[w[i]] * len(mb_seqs[i].input_ids) for i in micro], L, self.device),
                        eps_clip=cfg.eps_clip,
                        behav_imp_weight_cap=cfg.behav_imp_weight_cap,
                        use_decoupled=cfg.use_decoupled_loss,
                        kl_coef=cfg.kl_coef,
                        ref_logp=self._pad_rows([ref[k] for k in ks], L, self.device) if self.ref_model else None,
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

    def save_hf(self, path: str | Path) -> None:
        path = Path(path)
        tmp = _atomic_dir(path)
        self.model.save_pretrained(tmp)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        _commit_dir(tmp, path)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = _atomic_dir(path)
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
        _commit_dir(tmp, path)

    def load(self, path: str | Path) -> None:
        from transformers import AutoModelForCausalLM

        path = Path(path)
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(f"{path}: not a trainer checkpoint (no {STATE_FILE}); was it written by save()?")
        src = AutoModelForCausalLM.from_pretrained(path / MODEL_SUBDIR, dtype=torch.float32)
        self.model.load_state_dict(src.state_dict())
        del src
        st = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.version = int(st["version"])
        set_rng_state(st["rng"])


def make_trainer(model_path: str, cfg: RLConfig, device: str = "cpu", seed: int = 0) -> Trainer:
    """The trainer for cfg.backend ('torch' in-process; 'deepspeed' ZeRO across Ray GPU workers)."""
    if cfg.backend == "deepspeed":
        from asearcher.rl.deepspeed_trainer import DeepSpeedTrainer

        return DeepSpeedTrainer(model_path, cfg, device=device, seed=seed)
    return TorchTrainer(model_path, cfg, device=device, seed=seed)
