"""The trainer interface and the state handling every backend shares.

API (stable; the asynchronous system in rl/system/ depends on it):

    trainer = make_trainer(model_path, cfg.rl, device="cpu", seed=0)   # rl.trainers: by rl.backend
    metrics = trainer.train_step(groups)    # list[Group] -> dict[str, float]; trainer.version += 1
    sd = trainer.get_weights()              # CPU state dict (a copy) for rollout engines
    trainer.save(dir); trainer.load(dir)    # resumable: model, optimizer, scheduler, version, RNG states
    trainer.save_hf(dir)                    # Hugging Face model dir (+ tokenizer) for evaluation / disk sync

Backends import this module and `rl.algo` only; `rl.trainers.make_trainer` picks one.
"""

from __future__ import annotations

import abc
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
