"""Trainer backends behind one interface (`base.Trainer`), picked by `rl.backend`.

    torch      the whole policy in this process (CPU default, small GPUs)      torch_backend.TorchTrainer
    deepspeed  ZeRO across Ray GPU workers (paper scale)                       deepspeed_backend.DeepSpeedTrainer

Entries are lazy, so DeepSpeed is imported only when it is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asearcher.utils.registry import Registry

if TYPE_CHECKING:
    from asearcher.config import RLConfig
    from asearcher.rl.trainers.base import Trainer

TRAINERS: Registry[type] = Registry("trainer backend", key="rl.backend")
TRAINERS.register("torch", "asearcher.rl.trainers.torch_backend:TorchTrainer")
TRAINERS.register("deepspeed", "asearcher.rl.trainers.deepspeed_backend:DeepSpeedTrainer")


def make_trainer(model_path: str, cfg: RLConfig, device: str = "cpu", seed: int = 0) -> Trainer:
    """The trainer for cfg.backend."""
    return TRAINERS.get(cfg.backend)(model_path, cfg, device=device, seed=seed)
