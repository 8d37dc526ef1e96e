"""Pushing trainer weights to rollout workers, with a version counter on both sides.

- object_store (CPU default): the state dict is `ray.put` once; every worker fetches the same object.
- disk (what upstream ASearcher uses): the trainer writes an HF checkpoint (`save_hf`) under
  `<output>/weight_updates/v<version>` and workers load that path; older update dirs are deleted.
- nccl: not implemented here (needs a GPU process group between trainer and engines).

Workers apply updates interruptibly: in-flight generation continues under the new weights and every token
records the version that produced it (see asearcher/llm/engine.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import ray

from asearcher.utils.atomic import atomic_dir


class WeightSync:
    def __init__(self, mode: str, output_dir: str | Path | None = None):
        if mode == "nccl":
            raise NotImplementedError(
                "rl.weight_sync=nccl is not implemented in this suite; use 'object_store' (default, any machine) "
                "or 'disk' (shared filesystem between trainer and rollout nodes)"
            )
        if mode not in ("object_store", "disk"):
            raise ValueError(f"unknown weight_sync mode {mode!r}")
        if mode == "disk" and output_dir is None:
            raise ValueError("weight_sync=disk needs an output directory")
        self.mode = mode
        self.dir = Path(output_dir) / "weight_updates" if output_dir is not None else None
        self._current: Any = None  # the payload workers get: an ObjectRef or a path
        self.version = -1
        self._prev_path: Path | None = None

    def publish(self, trainer: Any, version: int) -> Any:
        """Make `trainer`'s weights available as `version`; returns what to pass to worker.update_weights."""
        if self.mode == "object_store":
            weights = {k: v.detach().to("cpu").contiguous() for k, v in trainer.get_weights().items()}
            self._current = ray.put(weights)
        else:
            assert self.dir is not None
            path = self.dir / f"v{version}"
            with atomic_dir(path) as tmp:
                trainer.save_hf(str(tmp))
            if self._prev_path is not None and self._prev_path != path:
                shutil.rmtree(self._prev_path, ignore_errors=True)
            self._prev_path = path
            self._current = str(path)
        self.version = version
        return self._current

    @property
    def current(self) -> Any:
        """The latest published payload (for a restarted worker), or None before the first publish."""
        return self._current
