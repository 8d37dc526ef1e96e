"""The trainer interface and the state handling every backend shares.

API (stable; the asynchronous system in rl/system/ depends on it):

    trainer = make_trainer(model_path, cfg.rl, device="cpu", seed=0)   # rl.trainers: by rl.backend
    metrics = trainer.train_step(groups)    # list[Group] -> dict[str, float]; trainer.version += 1
    sd = trainer.get_weights()              # CPU state dict (a copy) for rollout engines
    trainer.save(dir); trainer.load(dir)    # resumable: model, optimizer, scheduler, version, RNG states
    trainer.save_hf(dir)                    # Hugging Face model dir (+ tokenizer) for evaluation
    trainer.save_weights(dir)               # what an engine loads (rl.weight_sync: disk): weights in the model's dtype
    trainer.send_weights(group, layout)     # rl.weight_sync: broadcast: rank 0 of the weight group sends one version

Backends import this module and `rl.algo` only; `rl.trainers.make_trainer` picks one.
"""

from __future__ import annotations

import abc
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asearcher.llm.weight_broadcast import BucketLayout, GroupSpec, TensorMeta, metas_of, send_weights
from asearcher.rl.algo.types import Group

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

    # ---- weights for the engines (rl.weight_sync); backends override these to avoid full copies -------------------
    def save_weights(self, path: str | Path) -> None:
        """What an engine loads for a disk weight update: the model's weights in its own dtype (default: save_hf)."""
        self.save_hf(path)

    def iter_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The weights the engines need as (name, tensor), in a fixed order (default: a get_weights copy)."""
        return iter(self.get_weights().items())

    def weight_metas(self) -> list[TensorMeta]:
        """Name, shape and dtype of what iter_weights yields, in the same order."""
        return metas_of(self.iter_weights())

    def weight_device(self) -> str:
        """'cuda' when the weights live on GPUs (the broadcast can then use NCCL), else 'cpu'."""
        return "cpu"

    def send_weights(self, group: GroupSpec, layout: BucketLayout) -> int:
        """Rank 0 of the weight group: broadcast this version in layout's buckets; blocks until sent (bytes)."""
        return send_weights(group, layout, self.iter_weights())


def source_dtype(model_path: str | Path) -> torch.dtype:
    """The dtype the model was saved in (config.json `dtype` / `torch_dtype`), float32 when it says nothing: the
    dtype weight updates and exported models are written in, whatever precision the trainer computes in."""
    try:
        from transformers import AutoConfig

        dtype = getattr(AutoConfig.from_pretrained(str(model_path)), "dtype", None)
    except Exception as e:  # a bare weights dir: keep the trainer's float32
        log.warning("no config readable from %s (%s); exported weights stay float32", model_path, e)
        return torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


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
