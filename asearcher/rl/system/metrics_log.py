"""Per-step training metrics: OUTPUT/metrics.jsonl (one row per step), metrics.csv, optional TensorBoard.

`batch_metrics` turns one training batch into the logged numbers: reward; per trajectory (min/avg/max over
every trajectory of the batch's groups) turns, searches, page accesses, tool calls (searches + accesses) and
generated tokens; the per-token staleness histogram (version at train time minus the version that generated
the token) and the generate/tool time split. `rollout_metrics` gives the same per-trajectory numbers, prefixed
`rollout_`, over every trajectory finished since the last step, groups dropped by filtering included (the
batch alone is biased by dynamic filtering, as its reward is).
"""

from __future__ import annotations

import csv
import io
import json
import math
import resource
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from asearcher.agent.trajectory import Trajectory
from asearcher.rl.algo.types import Group
from asearcher.utils.atomic import atomic_write_text
from asearcher.utils.jsonl import JsonlAppender


def _mma(prefix: str, xs: list[float]) -> dict[str, float]:
    if not xs:
        return {f"{prefix}_min": 0.0, f"{prefix}_avg": 0.0, f"{prefix}_max": 0.0}
    return {
        f"{prefix}_min": float(min(xs)),
        f"{prefix}_avg": float(sum(xs) / len(xs)),
        f"{prefix}_max": float(max(xs)),
    }


# per-trajectory counts logged as <name>_min/_avg/_max (and rollout_<name>_*); tokens_per_traj = generated tokens
PER_TRAJECTORY = ("turns", "searches", "accesses", "tool_calls", "tokens_per_traj")


def trajectory_counts(traj: Trajectory, stats: dict[str, Any] | None = None) -> dict[str, int]:
    """One trajectory's PER_TRAJECTORY counts: LLM calls, search and page-access tool calls, generated tokens
    (`stats`: the trajectory's `stats()` when already computed)."""
    st = traj.stats() if stats is None else stats
    return {
        "turns": st["turns"],
        "searches": st["searches"],
        "accesses": st["accesses"],
        "tool_calls": st["searches"] + st["accesses"],
        "tokens_per_traj": st["output_tokens"],
    }


def count_metrics(counts: list[dict[str, int]], prefix: str = "") -> dict[str, float]:
    """min/avg/max of each PER_TRAJECTORY count over trajectories (0.0 each when there are none)."""
    out: dict[str, float] = {}
    for k in PER_TRAJECTORY:
        out.update(_mma(prefix + k, [c[k] for c in counts]))
    return out


def rollout_metrics(rewards: list[float], counts: list[dict[str, int]]) -> dict[str, Any]:
    """`rollout_*`: reward mean and per-trajectory counts over every finished trajectory (filtered groups too)."""
    out: dict[str, Any] = {
        "rollout_reward_mean": float(sum(rewards) / len(rewards)) if rewards else 0.0,
        "rollout_trajectories": len(rewards),
    }
    out.update(count_metrics(counts, "rollout_"))
    return out


def token_staleness(groups: list[Group], train_version: int) -> dict[str, int]:
    """Histogram {staleness: token count}; staleness = train_version - token version (engine versions >= 0)."""
    hist: Counter[int] = Counter()
    for g in groups:
        for s in g.samples:
            for call in s.trajectory.llm_calls:
                for v in call.output_versions:
                    if v >= 0:
                        hist[train_version - v] += 1
    return {str(k): hist[k] for k in sorted(hist)}


def batch_metrics(groups: list[Group], train_version: int) -> dict[str, Any]:
    trajs = [s.trajectory for g in groups for s in g.samples]
    stats = [t.stats() for t in trajs]
    rewards = [s.reward for g in groups for s in g.samples]
    out: dict[str, Any] = {
        "n_groups": len(groups),
        "n_trajectories": len(trajs),
        "reward_mean": float(sum(rewards) / len(rewards)) if rewards else 0.0,
    }
    out.update(count_metrics([trajectory_counts(t, st) for t, st in zip(trajs, stats, strict=True)]))
    out["generate_s_sum"] = float(sum(s["generate_s"] for s in stats))
    out["tool_s_sum"] = float(sum(s["tool_s"] for s in stats))
    hist = token_staleness(groups, train_version)
    out["token_staleness_hist"] = hist
    n_tok = sum(hist.values())
    out["token_staleness_mean"] = (sum(int(k) * v for k, v in hist.items()) / n_tok) if n_tok else 0.0
    out["group_staleness_max"] = max((train_version - g.submit_version for g in groups), default=0)
    return out


def peak_memory() -> dict[str, float]:
    """Peak RSS of this (driver) process in MiB, and CUDA max allocated when a GPU is in use."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    out = {"peak_rss_mib": round(rss_mib, 1)}
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception:  # pragma: no cover - torch without CUDA runtime
        pass
    return out


class MetricsLogger:
    """Append-only JSONL (durable per row) + a CSV regenerated from it + TensorBoard when installed.

    On resume from checkpoint step N, rows of later steps (written by the crashed run after its last
    checkpoint) are cut, so the log never holds a step twice; `restore_rows` (the rows saved with that
    checkpoint) replace the file's rows up to N, so a deleted or truncated log is made whole again.
    """

    def __init__(
        self,
        output_dir: str | Path,
        resume_step: int | None = None,
        tensorboard: bool = True,
        restore_rows: list[dict[str, Any]] | None = None,
    ):
        self.dir = Path(output_dir)
        self.jsonl = self.dir / "metrics.jsonl"
        self.csv = self.dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.jsonl.exists():
            JsonlAppender(self.jsonl).close()  # cuts a torn last line
            for line in self.jsonl.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    if resume_step is not None and row.get("step", 0) <= resume_step:
                        self.rows.append(row)
        if resume_step is not None and restore_rows is not None:
            self.rows = [r for r in restore_rows if r.get("step", 0) <= resume_step]
        if self.jsonl.exists() or self.rows:
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        if self.rows:
            self._write_csv()
        self._app = JsonlAppender(self.jsonl)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL/CSV only
                self._tb = None

    def log(self, row: dict[str, Any]) -> None:
        self._app.append(row)
        self.rows.append(row)
        self._write_csv()
        if self._tb is not None:
            step = int(row.get("step", len(self.rows)))
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def _write_csv(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            for k, v in r.items():
                if k not in keys and not isinstance(v, (list, dict)):
                    keys.append(k)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: r.get(k, "") for k in keys})
        atomic_write_text(self.csv, buf.getvalue())

    def close(self) -> None:
        self._app.close()
        if self._tb is not None:
            self._tb.close()
