"""Training dynamics (the paper's Fig. 6, 9, 10) from a run's metrics.jsonl: tool calls per trajectory (searches
and page accesses apart) and generated tokens per trajectory (min / mean / max) over the steps, the reward and the
staleness; and the keyword counts of Fig. 11 from the saved rollouts (rollouts/v*.jsonl.gz)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asearcher.rl.system.curves import moving_average, per_traj_series, reward_series
from asearcher.rl.system.rollout_log import ROLLOUT_DIR, keyword_counts, saved_versions

from . import figures
from .paper import figure_reading, paper_keywords
from .runs import Missing, Run, metrics_rows
from .tables import Table

DYNAMICS = "training_dynamics"
KEYWORDS = "keywords"
PER_TRAJ = (("searches", "searches"), ("accesses", "page accesses"), ("tokens_per_traj", "generated tokens"))


def _metrics_input(run: Run) -> tuple[list[dict[str, Any]], Missing | None]:
    path = run.train_dir() / "metrics.jsonl"
    why = "rule train" + ("" if run.cfg.rl.enabled else " (rl.enabled is false)")
    if not path.is_file():
        return [], Missing(str(path), why)
    rows = metrics_rows(path)
    return rows, (None if rows else Missing(f"{path} (no step logged)", why))


def dynamics_table(run: Run, rows: list[dict[str, Any]], missing: Missing | None) -> Table:
    cols = ["step", "reward", "trajectories"]
    for name, _ in PER_TRAJ:
        cols += [f"{name}_{s}" for s in ("min", "avg", "max")]
    cols += ["token_staleness_mean", "group_staleness_max", "wall_s"]
    t = Table(
        title=f"Training dynamics per step ({run.label})",
        columns=cols,
        digits=3,
        caption="Per trajectory over every trajectory finished since the previous step (filtered groups included): "
        "searches and page accesses (tool calls), generated tokens; reward: their mean reward; staleness in policy "
        "versions (token: mean over the trained batch; group: max); wall_s: seconds since the run started.",
    )
    if missing:
        t.add_missing(missing)
        return t
    steps, reward, n = reward_series(rows)
    by_step = {s: (r, k) for s, r, k in zip(steps, reward, n, strict=True)}
    series = {
        f"{name}_{s}": per_traj_series(rows, name, s) for name, _ in PER_TRAJ for s in ("min", "avg", "max")
    }
    for i, r in enumerate(rows):
        step = int(r["step"])
        rew, k = by_step.get(step, (None, 0))
        t.add(
            step=step,
            reward=rew,
            trajectories=k,
            **{c: v[i] for c, v in series.items()},
            token_staleness_mean=float(r.get("token_staleness_mean", 0.0)),
            group_staleness_max=int(r.get("group_staleness_max", 0)),
            wall_s=r.get("wall_s"),
        )
    return t


def _band(ax: Any, steps: list[int], rows: list[dict[str, Any]], name: str, label: str, color: str) -> None:
    lo, avg, hi = (per_traj_series(rows, name, s) for s in ("min", "avg", "max"))
    ax.fill_between(steps, lo, hi, color=color, alpha=0.15, label=f"{label}: min..max")
    ax.plot(steps, avg, color=color, label=f"{label}: mean")


def write_dynamics(config: str | Path, out_dir: str | Path) -> list[Path]:
    """training_dynamics.{csv,md,png,pdf} under out_dir."""
    run = Run.load(config)
    out = Path(out_dir)
    rows, missing = _metrics_input(run)
    paths = dynamics_table(run, rows, missing).write(out / DYNAMICS)
    caption = (
        f"Training dynamics as in the paper's Fig. 6, 9, 10, made by {run.label} ({run.train_dir()}/metrics.jsonl). "
        "Per trajectory, over the trajectories finished at each step: tool calls (searches and page accesses), "
        "generated tokens (min / mean / max); the reward; staleness. The paper's curves (7B-32B models over hundreds "
        "of steps), as read: "
        + " ".join(
            figure_reading(fig, "searches", "accesses", "tool_calls", "generated_tokens")
            for fig in ("fig6", "fig9", "fig10")
        )
    )
    if missing:
        return paths + figures.missing_figure(out / DYNAMICS, "training dynamics", [missing.line()], caption)
    fig, (a, b, c, d) = figures.subplots(2, 2, (13, 8.5))
    steps = [int(r["step"]) for r in rows]
    _band(a, steps, rows, "searches", "searches", "tab:blue")
    _band(a, steps, rows, "accesses", "page accesses", "tab:orange")
    a.set(
        xlabel="training step", ylabel="tool calls per trajectory (count)", title="tool calls per trajectory"
    )
    a.legend(fontsize=7, loc="upper right")

    lo, avg, hi = (per_traj_series(rows, "tokens_per_traj", s) for s in ("min", "avg", "max"))
    b.plot(steps, hi, color="tab:green", ls=":", label="max")
    b.plot(steps, avg, color="tab:green", label="mean")
    b.plot(steps, lo, color="tab:green", ls="--", label="min")
    if all(v > 0 for v in lo + avg + hi):
        b.set_yscale("log")
    b.set(xlabel="training step", ylabel="generated tokens per trajectory (tokens)", title="generated tokens")
    b.legend(fontsize=7, loc="upper right")

    rs, reward, _ = reward_series(rows)
    c.plot(rs, reward, "o", alpha=0.35, color="tab:purple", label="per step")
    c.plot(rs, moving_average(reward, 4), color="tab:purple", lw=2, label="moving average (4 steps)")
    c.set(xlabel="training step", ylabel="reward (mean per trajectory)", title="reward")
    c.legend(fontsize=7, loc="lower right")

    d.plot(steps, [float(r.get("token_staleness_mean", 0.0)) for r in rows], label="token staleness (mean)")
    d.plot(
        steps, [float(r.get("group_staleness_max", 0.0)) for r in rows], "--", label="group staleness (max)"
    )
    eta = run.cfg.rl.max_head_offpolicyness
    d.axhline(eta, color="0.5", ls=":", label=f"bound (rl.max_head_offpolicyness = {eta})")
    d.set(xlabel="training step", ylabel="staleness (policy versions)", title="staleness")
    d.legend(fontsize=7, loc="upper right")
    return paths + figures.save(fig, out / DYNAMICS, caption)


# ---- Fig. 11 ---------------------------------------------------------------------------------------------------------
def keyword_groups(run: Run) -> dict[str, list[str]]:
    """report.keywords as one group, else the paper's reflective and reference words."""
    if run.cfg.report.keywords is not None:
        return {"keywords": list(run.cfg.report.keywords)}
    return paper_keywords()


def write_keywords(config: str | Path, out_dir: str | Path) -> list[Path]:
    """keywords.{csv,md,png,pdf} under out_dir: occurrences per trajectory of each keyword over the steps."""
    run = Run.load(config)
    out = Path(out_dir)
    groups = keyword_groups(run)
    words = [w for ws in groups.values() for w in ws]
    train = run.train_dir()
    t = Table(
        title=f"Keyword counts over training (Fig. 11), {run.label}",
        columns=["step", "trajectories", *words],
        digits=3,
        caption="Mean occurrences per saved trajectory of each word (case-insensitive whole words, action tags left "
        "out) in the generated text of the saved rollouts of each policy version; step = version + 1.",
    )
    caption = (
        f"Keyword counts over training as in the paper's Fig. 11, made by {run.label} ({train}/{ROLLOUT_DIR}/). "
        "Occurrences per trajectory in the model's generated text. " + figure_reading("fig11", "trend")
    )
    versions = saved_versions(train)
    if not versions:
        why = "rule train with rl.save_rollouts" + ("" if run.cfg.rl.enabled else " (rl.enabled is false)")
        miss = Missing(f"{train}/{ROLLOUT_DIR}/v*.jsonl.gz", why)
        t.add_missing(miss)
        return t.write(out / KEYWORDS) + figures.missing_figure(
            out / KEYWORDS, "keyword counts", [miss.line()], caption
        )
    counts = keyword_counts(train, words)
    for v in sorted(counts):
        t.add(step=v + 1, trajectories=int(counts[v]["trajectories"]), **{w: counts[v][w] for w in words})
    paths = t.write(out / KEYWORDS)
    fig, axes = figures.subplots(1, len(groups), (6.5 * len(groups), 4.5))
    steps = [v + 1 for v in sorted(counts)]
    for ax, (group, ws) in zip(axes, groups.items(), strict=True):
        for w in ws:
            ax.plot(steps, [counts[v][w] for v in sorted(counts)], marker=".", label=w)
        ax.set(xlabel="training step", ylabel="occurrences per trajectory (count)", title=f"{group} words")
        ax.legend(fontsize=7, loc="upper left")
        if not any(counts[v][w] for v in counts for w in ws):
            ax.text(0.5, 0.5, "none of these words occurs in the generated text of the saved rollouts",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)  # fmt: skip
    return paths + figures.save(fig, out / KEYWORDS, caption)
