"""Resumable RL checkpoints: OUTPUT/checkpoints/step_N/{trainer/, state.json}, written atomically.

A checkpoint is built in a hidden temp directory and renamed into place, and `state.json` (written last) is
what marks it complete, so a crash mid-save leaves the previous checkpoint as the latest valid one.
state.json holds the question-stream cursor (+ the questions in flight, re-queued on resume), the controller
counters and the RNG states of the driver. metrics.jsonl holds the metric rows up to that step, so a resumed
run gets its whole log back even when the run's own metrics file was deleted (Snakemake removes the outputs of
a failed job).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from asearcher.utils.atomic import atomic_dir, atomic_write_text

_STEP = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    st = random.getstate()
    return {"python": [st[0], list(st[1]), st[2]], "torch": torch.get_rng_state().tolist()}


def set_rng_state(st: dict[str, Any]) -> None:
    p = st["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))


def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    trainer: Any,
    state: dict[str, Any],
    keep: int = 2,
    metrics_rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write checkpoint `step_<step>` (trainer state + `state` [+ metric rows]), then prune all but the newest
    `keep`."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    with atomic_dir(final) as tmp:
        trainer.save(str(tmp / "trainer"))
        if metrics_rows is not None:
            atomic_write_text(tmp / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in metrics_rows))
        atomic_write_text(tmp / "state.json", json.dumps({"step": step, **state, "rng": rng_state()}) + "\n")
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP.match(p.name)
        if m and (p / "state.json").exists():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    cks = list_checkpoints(ckpt_root)
    return cks[-1] if cks else None


def checkpoint_metrics(path: str | Path) -> list[dict[str, Any]] | None:
    """The metric rows saved with a checkpoint (None for a checkpoint without them)."""
    f = Path(path) / "metrics.jsonl"
    if not f.exists():
        return None
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def load_checkpoint(path: str | Path, trainer: Any) -> dict[str, Any]:
    """Restore `trainer` from a checkpoint dir and return its state dict (RNG restored too)."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    trainer.load(str(path / "trainer"))
    if "rng" in state:
        set_rng_state(state["rng"])
    return state
