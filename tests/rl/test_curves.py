"""Training-curve summary and plot drawn from metrics rows."""

from __future__ import annotations

import json

import pytest

from asearcher.rl.system.curves import moving_average, per_traj_series, reward_summary, write_run_summary


def row(step, reward, n=16, **kw):
    return {"step": step, "rollout_reward_mean": reward, "rollout_trajectories": n, "turns_avg": 2.0, **kw}


def test_moving_average_is_trailing_and_short_at_the_start():
    assert moving_average([1, 2, 3, 4, 5], 2) == [1, 1.5, 2.5, 3.5, 4.5]
    assert moving_average([], 3) == []


def test_reward_summary_weights_by_trajectories_and_skips_empty_steps():
    rows = [
        row(1, 0.0, 8),
        row(2, 1.0, 24),
        row(3, 0.9, 0),
        row(4, 0.5, 16),
        row(5, 0.7, 16),
        row(6, 0.2, 10),
        row(7, 0.8, 30),
        row(8, 0.6, 16),
        row(9, 0.6, 16),
    ]
    s = reward_summary(rows, frac=0.25)  # 8 non-empty steps -> windows of 2
    assert s["window_steps"] == 2 and s["steps"] == 9
    assert s["reward_start"] == pytest.approx((0.0 * 8 + 1.0 * 24) / 32)
    assert s["reward_end"] == pytest.approx(0.6)
    assert s["reward_gain"] == pytest.approx(0.6 - 0.75)
    assert reward_summary([]) == {"steps": 0}


def test_write_run_summary_writes_json_and_png(tmp_path):
    rows = [row(i, i / 10, token_staleness_mean=0.5, group_staleness_max=1) for i in range(1, 9)]
    s = write_run_summary(tmp_path, rows, title="t")
    assert json.loads((tmp_path / "summary.json").read_text()) == s and s["reward_end"] > s["reward_start"]
    png = (tmp_path / "training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_write_run_summary_with_no_rows_still_draws_the_declared_figure(tmp_path):
    assert write_run_summary(tmp_path, []) == {"steps": 0}
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_per_trajectory_curves_prefer_every_finished_trajectory_and_fall_back_to_the_batch():
    rows = [
        row(1, 0.1, searches_avg=1.0, rollout_searches_avg=2.0, accesses_max=3.0),
        row(2, 0.2, searches_avg=1.5),  # a run logged before the rollout_ counts
        row(3, 0.3),
    ]
    assert per_traj_series(rows, "searches", "avg") == [2.0, 1.5, 0.0]
    assert per_traj_series(rows, "accesses", "max") == [3.0, 0.0, 0.0]


def test_training_figure_draws_searches_and_accesses_apart(tmp_path, monkeypatch):
    import matplotlib.axes

    labels: list[str] = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):
        labels.append(kw.get("label", ""))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    counts = {
        f"rollout_{k}_{s}": v
        for k in ("searches", "accesses", "turns", "tokens_per_traj")
        for s, v in (("min", 0.0), ("avg", 2.0), ("max", 6.0))
    }
    write_run_summary(tmp_path, [row(i, i / 10, **counts) for i in range(1, 6)])
    assert any(lb.startswith("searches") for lb in labels) and any(
        lb.startswith("page accesses") for lb in labels
    )
    assert any(lb.startswith("generated tokens") for lb in labels)
