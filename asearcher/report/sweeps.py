"""One figure and one table per ablation sweep, from results/sweeps/<sweep>/runs.json:

    {"sweep": str, "parameter": dotted config key, "label": human label, "description": str,
     "runs": [{"value": any, "name": run name, "train_dir": dir with metrics.jsonl and summary.json,
               "eval": {"<benchmark>": path to aggregate.json}}]}

The figure: reward curves per value, the final reward vs the value, each benchmark's metric vs the value. A second
figure, throughput: training steps per second per value and the reward against wall-clock time (for the staleness
sweep, eta = 0 is synchronous RL: this is the paper's async-vs-sync comparison)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asearcher.errors import UserFacingError
from asearcher.rl.system.curves import moving_average, reward_series

from . import figures
from .runs import Missing, load_eval, metrics_rows, read_json
from .tables import Table

ETA_KEY = "rl.max_head_offpolicyness"


class SweepRun(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: Any
    name: str
    train_dir: str
    eval: dict[str, str] = Field(default_factory=dict)


class Sweep(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sweep: str
    parameter: str
    label: str = ""
    description: str = ""
    runs: list[SweepRun] = Field(min_length=1)


def load_sweep(path: str | Path) -> Sweep:
    """runs.json, validated: a missing or wrong key is an error naming the file and the key."""
    raw = read_json(path)
    try:
        return Sweep.model_validate(raw)
    except ValidationError as e:
        keys = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
        )
        raise UserFacingError(f"{path}: not a sweep description ({keys})") from None


def _label(sweep: Sweep) -> str:
    return sweep.label or sweep.parameter


def _run_data(run: SweepRun) -> tuple[list[dict[str, Any]], dict[str, Any], list[Missing]]:
    train = Path(run.train_dir)
    missing, rows, summary = [], [], {}
    if (train / "metrics.jsonl").is_file():
        rows = metrics_rows(train / "metrics.jsonl")
    else:
        missing.append(Missing(str(train / "metrics.jsonl"), f"the sweep's train rule (run {run.name})"))
    if (train / "summary.json").is_file():
        summary = read_json(train / "summary.json")
    return rows, summary, missing


def _eval_values(run: SweepRun) -> tuple[dict[str, tuple[str, float | None]], list[Missing]]:
    """benchmark -> (metric, avg@k in percent) of the run's evaluations."""
    values, missing = {}, []
    for bench, path in run.eval.items():
        if not Path(path).is_file():
            missing.append(Missing(path, f"the sweep's eval rule (run {run.name})"))
            continue
        r = load_eval(path)
        metric = next((m for m in ("judge", "f1", "em") if m in r.metrics()), (r.metrics() or [None])[0])
        values[bench] = (metric or "", r.value(metric, "avg") if metric else None)
    return values, missing


def _steps_per_s(rows: list[dict[str, Any]]) -> float | None:
    if not rows or not rows[-1].get("wall_s"):
        return None
    return int(rows[-1]["step"]) / float(rows[-1]["wall_s"])


def write_sweep(runs_json: str | Path, out_dir: str | Path, run_label: str = "") -> list[Path]:
    """sweep.{csv,md}, sweep.{png,pdf} and throughput.{png,pdf} under out_dir (results/report/sweeps/<sweep>/)."""
    out = Path(out_dir)
    runs_json = Path(runs_json)
    name = runs_json.parent.name
    made_by = f" ({run_label})" if run_label else ""
    if not runs_json.is_file():
        miss = Missing(str(runs_json), f"the sweep's rules (snakemake --cores all sweep_{name})")
        t = Table(title=f"Sweep {name}", columns=["value", "run"])
        t.add_missing(miss)
        cap = f"Sweep {name}{made_by}: its runs are missing."
        return (
            t.write(out / "sweep")
            + figures.missing_figure(out / "sweep", f"sweep {name}", [miss.line()], cap)
            + figures.missing_figure(out / "throughput", f"sweep {name}: throughput", [miss.line()], cap)
        )
    sweep = load_sweep(runs_json)
    data = []
    for run in sweep.runs:
        rows, summary, missing = _run_data(run)
        evals, eval_missing = _eval_values(run)
        data.append((run, rows, summary, evals, missing + eval_missing))
    benches = list(dict.fromkeys(b for *_, evals, _ in data for b in evals))
    eval_cols = [f"{b}_avg" for b in benches]
    t = Table(
        title=f"Sweep {sweep.sweep}: {_label(sweep)} ({sweep.parameter}){made_by}",
        columns=["value", "run", "steps", "wall_s", "steps_per_s", "reward_start", "reward_end", "reward_gain",
                 *eval_cols, "metrics"],
        digits=3,
        caption=(sweep.description.rstrip(".") + ". " if sweep.description else "")
        + "reward_start / reward_end: mean reward over the first / last quarter of the steps (summary.json); "
        "<benchmark>_avg: the evaluation's metric (column metrics) avg@k in percent.",
    )  # fmt: skip
    for run, rows, summary, evals, missing in data:
        for m in missing:
            t.add_missing(m, run=run.name)
        t.add(
            value=json.dumps(run.value) if not isinstance(run.value, str) else run.value,
            run=run.name,
            steps=summary.get("steps", rows[-1]["step"] if rows else None),
            wall_s=rows[-1].get("wall_s") if rows else None,
            steps_per_s=_steps_per_s(rows),
            reward_start=summary.get("reward_start"),
            reward_end=summary.get("reward_end"),
            reward_gain=summary.get("reward_gain"),
            metrics=", ".join(f"{b}: {m}" for b, (m, _) in evals.items()),
            **{f"{b}_avg": v for b, (_, v) in evals.items()},
        )
    paths = t.write(out / "sweep")
    paths += _sweep_figure(sweep, data, benches, out / "sweep", made_by)
    paths += _throughput_figure(sweep, data, out / "throughput", made_by)
    return paths


def _value_label(sweep: Sweep, value: Any) -> str:
    return f"{_label(sweep)} = {value}"


def _sweep_figure(sweep: Sweep, data: list, benches: list[str], stem: Path, made_by: str) -> list[Path]:
    fig, (a, b, c) = figures.subplots(1, 3, (18, 5))
    xs = list(range(len(data)))
    ticks = [str(run.value) for run, *_ in data]
    for i, (run, rows, *_rest) in enumerate(data):
        steps, reward, _ = reward_series(rows)
        color = figures.SUITE_COLORS[i % len(figures.SUITE_COLORS)]
        if steps:
            a.plot(steps, moving_average(reward, 4), color=color, label=_value_label(sweep, run.value))
    a.set(xlabel="training step", ylabel="reward (moving average of 4 steps)", title="reward curves")
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=7)
    ends = [summary.get("reward_end") for _, _, summary, *_ in data]
    b.plot(
        [x for x, v in zip(xs, ends, strict=True) if v is not None], [v for v in ends if v is not None], "o-"
    )
    b.set_xticks(xs)
    b.set_xticklabels(ticks)
    b.set(xlabel=f"{_label(sweep)} ({sweep.parameter})", ylabel="final reward (mean, last quarter of steps)",
          title="final reward")  # fmt: skip
    if benches:
        for j, bench in enumerate(benches):
            vals = [
                (x, evals[bench][1])
                for x, (_, _, _, evals, _) in zip(xs, data, strict=True)
                if bench in evals
            ]
            vals = [(x, v) for x, v in vals if v is not None]
            metric = next((evals[bench][0] for *_, evals, _ in data if bench in evals), "")
            c.plot([x for x, _ in vals], [v for _, v in vals], "o-", color=figures.SUITE_COLORS[j % 8],
                   label=f"{bench} ({metric} avg@k)")  # fmt: skip
        c.set_xticks(xs)
        c.set_xticklabels(ticks)
        c.set(
            xlabel=f"{_label(sweep)} ({sweep.parameter})", ylabel="evaluation metric (%)", title="evaluation"
        )
        c.legend(fontsize=7)
    else:
        figures.message(c, ["no evaluation in runs.json (runs[].eval is empty)"], "evaluation")
    caption = (
        f"Sweep '{sweep.sweep}' over {sweep.parameter}{made_by}: reward curves per value, the final reward and each "
        "evaluated benchmark's metric against the value. " + sweep.description
    )
    return figures.save(fig, stem, caption)


def _throughput_figure(sweep: Sweep, data: list, stem: Path, made_by: str) -> list[Path]:
    fig, (a, b) = figures.subplots(1, 2, (13, 4.8))
    ticks = [str(run.value) for run, *_ in data]
    rates = [_steps_per_s(rows) for _, rows, *_ in data]
    a.bar(
        [i for i, r in enumerate(rates) if r is not None],
        [r for r in rates if r is not None],
        color="tab:blue",
    )
    a.set_xticks(range(len(ticks)))
    a.set_xticklabels(ticks)
    a.set(xlabel=f"{_label(sweep)} ({sweep.parameter})", ylabel="training steps per second (1/s)",
          title="throughput")  # fmt: skip
    for i, (run, rows, *_rest) in enumerate(data):
        steps, reward, _ = reward_series(rows)
        wall = {int(r["step"]): float(r.get("wall_s") or 0.0) for r in rows}
        if steps:
            b.plot([wall[s] for s in steps], moving_average(reward, 4), color=figures.SUITE_COLORS[i % 8],
                   label=_value_label(sweep, run.value))  # fmt: skip
    b.set(
        xlabel="wall-clock time (s)", ylabel="reward (moving average of 4 steps)", title="reward vs wall time"
    )
    if b.get_legend_handles_labels()[0]:
        b.legend(fontsize=7)
    what = (
        "asynchronous vs synchronous RL (eta = 0 is synchronous: every trajectory from the current policy)"
        if sweep.parameter == ETA_KEY
        else f"throughput over {sweep.parameter}"
    )
    caption = f"Sweep '{sweep.sweep}'{made_by}: {what}. Left: training steps per second; right: reward against wall time."
    return figures.save(fig, stem, caption)
