"""A run's training curves at a glance: `summary.json` (reward at the start vs the end) and `training.png`.

Both are drawn from the per-step rows of metrics.jsonl after a run, so they also work on a resumed or finished
run (`asearcher train` writes them at the end). The report notebooks draw the paper's figures from the same rows
(Fig. 6, 9, 10: the per-trajectory searches / accesses / generated tokens) and from the saved rollouts
(Fig. 11: `rollout_log.keyword_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asearcher.utils.jsonl import write_json

REWARD_KEY = "rollout_reward_mean"  # every finished group, filtered ones included (what the policy achieves)


def per_traj_series(rows: Sequence[dict[str, Any]], name: str, stat: str) -> list[float]:
    """`rollout_<name>_<stat>` (every finished trajectory, like the reward) per row, else the trained batch's
    `<name>_<stat>` (runs logged before the rollout_ counts existed), else 0."""
    return [float(r.get(f"rollout_{name}_{stat}", r.get(f"{name}_{stat}", 0.0))) for r in rows]


def _band(a: Any, s: list[int], rows: Sequence[dict[str, Any]], name: str, label: str, color: str) -> None:
    """avg line + min..max band of one per-trajectory count."""
    a.fill_between(
        s, per_traj_series(rows, name, "min"), per_traj_series(rows, name, "max"), color=color, alpha=0.15
    )
    a.plot(s, per_traj_series(rows, name, "avg"), color=color, label=f"{label} (avg; band min..max)")


def moving_average(xs: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to `window` points (shorter at the start)."""
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= window:
            acc -= xs[i - window]
        out.append(acc / min(i + 1, window))
    return out


def reward_series(rows: Sequence[dict[str, Any]]) -> tuple[list[int], list[float], list[int]]:
    """(steps, reward, trajectories) over the steps whose rollouts finished any trajectory."""
    steps, reward, n = [], [], []
    for r in rows:
        k = int(r.get("rollout_trajectories", r.get("n_trajectories", 0)))
        if k > 0:
            steps.append(int(r["step"]))
            reward.append(float(r.get(REWARD_KEY, r.get("reward_mean", 0.0))))
            n.append(k)
    return steps, reward, n


def reward_summary(rows: Sequence[dict[str, Any]], frac: float = 0.25) -> dict[str, Any]:
    """Trajectory-weighted mean reward over the first and the last `frac` of the steps."""
    steps, reward, n = reward_series(rows)
    if not steps:
        return {"steps": 0}
    w = max(1, round(len(steps) * frac))

    def wmean(lo: int, hi: int) -> float:
        return sum(r * k for r, k in zip(reward[lo:hi], n[lo:hi], strict=True)) / max(1, sum(n[lo:hi]))

    start, end = wmean(0, w), wmean(len(steps) - w, len(steps))
    return {
        "steps": steps[-1],
        "window_steps": w,
        "reward_start": start,
        "reward_end": end,
        "reward_gain": end - start,
        "trajectories": sum(n),
    }


def plot_training(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    steps, reward, _ = reward_series(rows)
    a = ax[0][0]
    a.plot(steps, reward, "o", alpha=0.35, label="per step")
    a.plot(steps, moving_average(reward, 4), "-", lw=2, label="moving average (4)")
    a.set(xlabel="step", ylabel="rollout reward", title="reward")
    a.legend(loc="lower right")

    s = [int(r["step"]) for r in rows]
    a = ax[0][1]
    _band(a, s, rows, "searches", "searches", "tab:blue")
    _band(a, s, rows, "accesses", "page accesses", "tab:orange")
    a.plot(s, per_traj_series(rows, "turns", "avg"), "--", color="tab:gray", label="turns (avg)")
    a.set(xlabel="step", title="tool calls and turns per trajectory")
    a.legend()

    a = ax[1][0]
    a.plot(s, [float(r.get("token_staleness_mean", 0.0)) for r in rows], label="token staleness (mean)")
    a.plot(s, [float(r.get("group_staleness_max", 0.0)) for r in rows], "--", label="group staleness (max)")
    a.plot(s, [float(r.get("trainer_idle_frac", 0.0)) for r in rows], label="trainer idle fraction")
    a.set(xlabel="step", title="asynchrony")
    a.legend()

    a = ax[1][1]
    _band(a, s, rows, "tokens_per_traj", "generated tokens", "tab:green")
    a.set(xlabel="step", title="generated tokens per trajectory")
    a.legend()

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_run_summary(out_dir: str | Path, rows: Sequence[dict[str, Any]], title: str = "") -> dict[str, Any]:
    """OUT/summary.json and OUT/training.png from the run's metric rows; returns the summary."""
    out = Path(out_dir)
    summary = reward_summary(rows)
    write_json(out / "summary.json", summary)
    plot_training(rows, out / "training.png", title=title)  # drawn even empty: the DAG declares the file
    return summary
