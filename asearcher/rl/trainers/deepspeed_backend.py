"""The same Trainer API on DeepSpeed ZeRO (stage cfg.zero_stage, default 3) across Ray GPU workers.

Layout: one Ray actor per rank (one GPU each, `cfg.trainer_gpus` ranks), each the only owner of its GPU: the ranks
take the bundles of one placement group reserved at start-up (`reserve_ranks`, packed onto as few nodes as the
cluster allows), and fail with a clear error when the cluster cannot hold them (asearcher.utils.placement). CPU
ranks (trainer_gpus = 0, tests) reserve a CPU and see no GPU. The driver-side `DeepSpeedTrainer`
packs trajectories and computes advantages for the WHOLE batch (so the 'areal' global token normalisation and
the loss weights are global, exactly as in the torch backend), then deals whole trajectories to ranks balanced by
tokens. Each rank recomputes proximal logprobs for its share, then runs the decoupled PPO loss over its
micro-batches; DeepSpeed all-reduces (averages) gradients across ranks, so each rank's loss is multiplied by the
world size to keep the global weighted sum. ZeRO-3 gathers parameters collectively in every forward, so every
rank runs the same number of micro-batches (short ranks run empty ones with zero loss).

torch.distributed is initialised from env (MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE) set by the driver; the
rank-0 actor picks the port. Weights are gathered from the ZeRO partitions for get_weights / save_hf and the
in-memory broadcast to the engines (deepspeed_weights.DeepSpeedRankWeights).
`deepspeed` is imported only inside the workers (it is an optional GPU dependency).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asearcher.config import RLConfig
from asearcher.llm.weight_broadcast import BucketLayout, GroupSpec, TensorMeta
from asearcher.rl.algo.batching import (
    build_sequences,
    split_microbatches,
    split_minibatches,
    staleness_metrics,
)
from asearcher.rl.algo.logprobs import loss_positions, pad_batch, token_logprobs
from asearcher.rl.algo.loss import LossStats, decoupled_ppo_loss, token_weights
from asearcher.rl.algo.types import Group, TrainSequence
from asearcher.rl.trainers.base import STATE_FILE, Trainer, seed_everything
from asearcher.rl.trainers.deepspeed_weights import DeepSpeedRankWeights
from asearcher.utils.placement import Reservation, actor_options


def ds_config(cfg: RLConfig, *, cuda: bool) -> dict[str, Any]:
    """DeepSpeed config from the RL config: ZeRO stage, AdamW, clipping, bf16 on GPU, warmup."""
    o = cfg.optim
    conf: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,  # we feed our own token-bounded micro-batches
        "gradient_accumulation_steps": 1,  # accumulation boundaries are set explicitly per micro-batch
        "gradient_clipping": o.grad_clip,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": [o.beta1, o.beta2],
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                # on the CPU, torch's AdamW: DeepSpeed's FusedAdam is a CUDA op it would JIT-compile first
                # (minutes, and a C++ toolchain) only to run it on the CPU
                **({} if cuda else {"torch_adam": True}),
            },
        },
        "zero_optimization": {
            "stage": cfg.zero_stage,
            "overlap_comm": cuda,
            "contiguous_gradients": True,
            "stage3_gather_16bit_weights_on_model_save": True,
        },
        "bf16": {"enabled": cuda},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if o.warmup_steps > 0:
        conf["scheduler"] = {
            "type": "WarmupLR",
            "params": {
                "warmup_min_lr": 0.0,
                "warmup_max_lr": o.lr,
                "warmup_num_steps": o.warmup_steps,
                "warmup_type": "linear",
            },
        }
    return conf


def reserve_ranks(cfg: RLConfig, *, timeout_s: float | None = None) -> Reservation | None:
    """One 1-GPU bundle per rank, packed (None for CPU ranks). Raises UserFacingError if not met in time."""
    if cfg.trainer_gpus <= 0:
        return None
    return Reservation.create(
        [{"GPU": 1.0} for _ in range(cfg.trainer_gpus)],
        what=f"the GPUs of {cfg.trainer_gpus} DeepSpeed ranks (rl.trainer_gpus) x 1",
        timeout_s=timeout_s,
    )


def rank_options(cfg: RLConfig, reservation: Reservation | None, rank: int) -> dict[str, Any]:
    """Ray options of trainer rank `rank`: its GPU (bundle `rank`), or one CPU and no GPU when trainer_gpus = 0."""
    if cfg.trainer_gpus <= 0:
        return actor_options(0, cpus=1)
    if reservation is None:
        return actor_options(1)
    return reservation.options(rank, 1)


def deal_trajectories(seqs: list[TrainSequence], world: int) -> list[list[TrainSequence]]:
    """Whole trajectories to ranks, largest first onto the least-loaded rank (balanced by tokens)."""
    trajs: dict[int, list[TrainSequence]] = {}
    for s in seqs:
        trajs.setdefault(s.traj_index, []).append(s)
    load = [0] * world
    out: list[list[TrainSequence]] = [[] for _ in range(world)]
    for t in sorted(trajs.values(), key=lambda ss: -sum(len(s.input_ids) for s in ss)):
        r = int(np.argmin(load))
        out[r].extend(t)
        load[r] += sum(len(s.input_ids) for s in t)
    return out


class DeepSpeedWorker(DeepSpeedRankWeights):
    """One rank. Created as a Ray actor by DeepSpeedTrainer (the class is wrapped with ray.remote there)."""

    def __init__(self, rank: int, world: int, model_path: str, cfg_dict: dict, seed: int):
        self.rank, self.world = rank, world
        self.cfg = RLConfig.model_validate(cfg_dict)
        self.model_path = model_path
        self.seed = seed
        self.cuda = torch.cuda.is_available()

    @staticmethod
    def address() -> tuple[str, int]:
        import ray

        ip = ray.util.get_node_ip_address()
        s = socket.socket()
        s.bind(("", 0))
        port = s.getsockname()[1]
        s.close()
        return ip, port

    def setup(self, master_addr: str, master_port: int) -> bool:
        import deepspeed
        from transformers import AutoModelForCausalLM
        from transformers.integrations import HfDeepSpeedConfig

        os.environ.update(
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world),
            LOCAL_RANK="0",
        )
        seed_everything(self.seed)
        if self.cuda:
            torch.cuda.set_device(0)  # Ray exposes exactly one GPU per actor
        deepspeed.init_distributed(dist_backend="nccl" if self.cuda else "gloo")
        self.conf = ds_config(self.cfg, cuda=self.cuda)
        # Keeps zero.Init active during from_pretrained under ZeRO-3: each rank materialises only its shard.
        self._hf_ds = HfDeepSpeedConfig(self.conf) if self.cfg.zero_stage == 3 else None
        model = AutoModelForCausalLM.from_pretrained(
            self.model_path, dtype=torch.bfloat16 if self.cuda else torch.float32
        )
        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.config.use_cache = False
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=model.parameters(), config=self.conf
        )
        self.device = self.engine.device
        self.ref = None
        if self.cfg.kl_coef > 0:
            self.ref = (
                AutoModelForCausalLM.from_pretrained(self.model_path, dtype=model.dtype)
                .to(self.device)
                .eval()
            )
            self.ref.requires_grad_(False)
        return True

    # ---- compute ------------------------------------------------------------------------------------------
    def _lp(self, model, seqs, grad: bool, entropy: bool = False):
        ids, att = pad_batch([s.input_ids for s in seqs], device=self.device)
        pos = loss_positions(seqs, ids.shape, self.device)  # the loss reads no other position
        with torch.set_grad_enabled(grad):
            return token_logprobs(model, ids, att, self.cfg.temperature, with_entropy=entropy, positions=pos)

    def _micro_plan(self, seqs: list[TrainSequence], n_micro: int | None) -> list[list[int]]:
        plan = split_microbatches(seqs, self.cfg.max_tokens_per_mb)
        if n_micro is not None:
            plan += [[] for _ in range(n_micro - len(plan))]
        return plan

    def n_micro(self, seqs: list[TrainSequence]) -> int:
        return len(split_microbatches(seqs, self.cfg.max_tokens_per_mb)) if seqs else 0

    def recompute(self, seqs: list[TrainSequence], n_micro: int, use_ref: bool = False) -> list[list[float]]:
        model = self.ref if use_ref else self.engine.module
        out: list[list[float]] = [[] for _ in seqs]
        was = model.training
        model.eval()
        for mb in self._micro_plan(seqs, n_micro):
            batch = [seqs[i] for i in mb] or [_dummy()]
            lp, _ = self._lp(model, batch, grad=False)
            for row, i in enumerate(mb):
                out[i] = lp[row, : len(seqs[i].input_ids)].float().cpu().tolist()
        model.train(was)
        return out

    def train_minibatch(self, seqs, weights, prox, ref, n_micro: int) -> dict[str, float]:
        cfg = self.cfg
        eng = self.engine
        eng.train()
        total = LossStats()
        loss_sum = ent_sum = 0.0
        plan = self._micro_plan(seqs, n_micro)

        def rows(vals, L):
            t = torch.zeros((len(vals), L), dtype=torch.float32)
            for i, v in enumerate(vals):
                t[i, : len(v)] = torch.as_tensor(v, dtype=torch.float32)
            return t.to(self.device)

        for k, mb in enumerate(plan):
            eng.set_gradient_accumulation_boundary(k == len(plan) - 1)
            ms = [seqs[i] for i in mb] or [_dummy()]
            L = max(len(s.input_ids) for s in ms)
            lp, ent = self._lp(eng, ms, grad=True, entropy=True)
            lp = lp.float()
            mask = rows([s.loss_mask for s in ms], L)
            loss, st = decoupled_ppo_loss(
                lp,
                rows([prox[i] for i in mb], L)
                if (mb and cfg.use_decoupled_loss)
                else (lp.detach() if cfg.use_decoupled_loss else None),
                rows([s.behav_logprobs for s in ms], L),
                rows([[s.advantage] * len(s.input_ids) for s in ms], L),
                mask,
                rows([[weights[i]] * len(seqs[i].input_ids) for i in mb], L)
                if mb
                else torch.zeros_like(mask),
                eps_clip=cfg.eps_clip,
                behav_imp_weight_cap=cfg.behav_imp_weight_cap,
                use_decoupled=cfg.use_decoupled_loss,
                kl_coef=cfg.kl_coef,
                ref_logp=rows([ref[i] for i in mb], L)
                if (self.ref is not None and mb)
                else (lp.detach() if self.ref is not None else None),
            )
            # DeepSpeed averages gradients over ranks; the weights are global, so undo the 1/world.
            eng.backward(loss * self.world)
            if mb:
                loss_sum += float(loss.detach())
                ent_sum += float((ent * mask).sum())
                total.add(st)
        eng.step()
        gn = eng.get_global_grad_norm()
        return {
            "loss": loss_sum,
            "entropy": ent_sum,
            "grad_norm": float(gn) if gn is not None else 0.0,
            **{f"st_{k}": getattr(total, k) for k in total.__dataclass_fields__},
            "lr": float(eng.get_lr()[0]),
        }

    # ---- checkpoints (weights: DeepSpeedRankWeights) -------------------------------------------------------
    def save(self, path: str, client_state: dict) -> bool:
        self.engine.save_checkpoint(path, tag="step", client_state=client_state)
        return True

    def load(self, path: str) -> dict:
        _, client_state = self.engine.load_checkpoint(path, tag="step")
        return client_state or {}


def _dummy() -> TrainSequence:
    """An empty micro-batch keeps ZeRO-3's collective parameter gathers in step across ranks."""
    return TrainSequence(
        input_ids=[0, 0], loss_mask=[0, 0], behav_logprobs=[0.0, 0.0], versions=[-1, -1], reward=0.0
    )


class DeepSpeedTrainer(Trainer):
    def __init__(self, model_path: str, cfg: RLConfig, *, device: str = "cpu", seed: int = 0):
        import ray

        try:
            import deepspeed  # noqa: F401
        except ImportError as e:
            from asearcher.errors import UserFacingError

            raise UserFacingError(
                "rl.backend is 'deepspeed' but deepspeed is not installed: pip install 'asearcher-repro[gpu]' "
                "(or DS_BUILD_OPS=0 pip install deepspeed), or set rl.backend: torch"
            ) from e
        self.cfg = cfg
        self.version = 0
        self.seed = seed
        self._owns_ray = (
            not ray.is_initialized()
        )  # the RL system usually starts Ray; a standalone use does here
        if self._owns_ray:
            from asearcher.utils.ray_start import ensure_ray

            ensure_ray()
        self.world = max(1, cfg.trainer_gpus)
        self._reservation = reserve_ranks(cfg)
        actor = ray.remote(DeepSpeedWorker)
        self.workers = [
            actor.options(**rank_options(cfg, self._reservation, r)).remote(
                r, self.world, str(model_path), cfg.model_dump(), seed
            )
            for r in range(self.world)
        ]
        addr, port = ray.get(self.workers[0].address.remote())
        ray.get([w.setup.remote(addr, port) for w in self.workers])

    def train_step(self, groups: list[Group]) -> dict[str, float]:
        import ray

        t0 = time.perf_counter()
        cfg = self.cfg
        seqs, info = build_sequences(groups, cfg)
        for s in seqs:
            if s.loss_mask and s.loss_mask[0]:
                s.loss_mask[0] = 0
        metrics: dict[str, float] = dict(info)
        metrics.update(staleness_metrics(seqs, self.version))
        agg: dict[str, float] = {}
        n_mb = 0
        shares_all = deal_trajectories(seqs, self.world)
        # proximal (and reference) logprobs for every sequence, before any update of this step
        n_micro = max(len(split_microbatches(sh, cfg.max_tokens_per_mb)) if sh else 0 for sh in shares_all)
        prox_all = ray.get(
            [w.recompute.remote(sh, n_micro) for w, sh in zip(self.workers, shares_all, strict=True)]
        )
        prox = {
            id(s): lp
            for sh, lps in zip(shares_all, prox_all, strict=True)
            for s, lp in zip(sh, lps, strict=True)
        }
        ref: dict[int, list[float]] = {}
        if cfg.kl_coef > 0:
            ref_all = ray.get(
                [
                    w.recompute.remote(sh, n_micro, True)
                    for w, sh in zip(self.workers, shares_all, strict=True)
                ]
            )
            ref = {
                id(s): lp
                for sh, lps in zip(shares_all, ref_all, strict=True)
                for s, lp in zip(sh, lps, strict=True)
            }
        for mb in split_minibatches(seqs, cfg.ppo_minibatches):
            w = dict(zip(map(id, mb), token_weights(mb, cfg.advantage), strict=True))
            shares = deal_trajectories(mb, self.world)
            n_micro = (
                max(len(split_microbatches(sh, cfg.max_tokens_per_mb)) if sh else 0 for sh in shares) or 1
            )
            outs = ray.get(
                [
                    wk.train_minibatch.remote(
                        sh,
                        [w[id(s)] for s in sh],
                        [prox[id(s)] for s in sh],
                        [ref.get(id(s), []) for s in sh],
                        n_micro,
                    )
                    for wk, sh in zip(self.workers, shares, strict=True)
                ]
            )
            n_mb += 1
            for o in outs:
                for k, v in o.items():
                    if k in ("grad_norm", "lr"):
                        agg[k] = v  # identical on every rank
                    else:
                        agg[k] = agg.get(k, 0.0) + v
        self.version += 1
        n = max(agg.get("st_n_tokens", 0.0), 1.0)
        masked = agg.get("st_behav_masked", 0.0)
        metrics.update(
            version=float(self.version),
            loss=agg.get("loss", 0.0) / max(1, n_mb),
            grad_norm=agg.get("grad_norm", 0.0),
            n_seqs=float(len(seqs)),
            n_tokens=float(sum(sum(s.loss_mask) for s in seqs)),
            n_seq_tokens=float(sum(len(s.input_ids) for s in seqs)),
            clip_frac=agg.get("st_clipped", 0.0) / n,
            behav_masked_frac=masked / n,
            behav_weight_mean=agg.get("st_behav_weight", 0.0) / max(1.0, n - masked),
            ratio_mean=agg.get("st_ratio", 0.0) / n,
            kl=agg.get("st_kl", 0.0) / n,
            entropy=agg.get("entropy", 0.0) / n,
            lr=agg.get("lr", 0.0),
            train_s=time.perf_counter() - t0,
            world_size=float(self.world),
        )
        return metrics

    def get_weights(self) -> dict[str, torch.Tensor]:
        import ray

        return ray.get([w.state_dict.remote() for w in self.workers])[0]

    def save_hf(self, path: str | Path) -> None:
        import ray

        ray.get([w.save_hf.remote(str(path)) for w in self.workers])

    def save_weights(self, path: str | Path) -> None:
        import ray

        ray.get([w.save_hf.remote(str(path), False) for w in self.workers])

    def weight_metas(self) -> list[TensorMeta]:
        import ray

        return ray.get(self.workers[0].weight_metas.remote())

    def weight_device(self) -> str:
        return "cuda" if self.cfg.trainer_gpus > 0 else "cpu"

    def send_weights(self, group: GroupSpec, layout: BucketLayout) -> int:
        import ray

        return ray.get([w.send_weights.remote(group, layout) for w in self.workers])[0]

    def save(self, path: str | Path) -> None:
        import ray

        # DeepSpeed writes per-rank shards into one directory (shared storage across nodes, as upstream).
        state = {"version": self.version, "seed": self.seed}
        ray.get([w.save.remote(str(path), state) for w in self.workers])
        torch.save(state, Path(path) / STATE_FILE)

    def load(self, path: str | Path) -> None:
        import ray

        if not (Path(path) / STATE_FILE).exists():
            raise FileNotFoundError(
                f"{path}: not a trainer checkpoint (no {STATE_FILE}); was it written by save()?"
            )
        states = ray.get([w.load.remote(str(path)) for w in self.workers])
        self.version = int(states[0].get("version", torch.load(Path(path) / STATE_FILE)["version"]))

    def close(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None
        if self._owns_ray:
            ray.shutdown()
