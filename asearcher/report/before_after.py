"""Before vs after RL (the paper's Fig. 8): each pair of models (report.pairs, or derived: the RL stage's starting
model and its output) over the benchmarks both were evaluated on, with evaluations on the RL training questions
labelled in-distribution, beside the paper's Fig. 8 (QwQ-32B before RL vs ASearcher-Web-QwQ v1 / v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import figures
from .paper import HARD_BENCHMARKS, TABLES, paper_value
from .runs import Missing, Run, derived_pairs, in_distribution_names, is_in_distribution, load_eval
from .tables import Table

NAME = "before_after_rl"
PAPER_BEFORE = "QwQ-32B prompt agent (before RL)"
PAPER_AFTER = ("ASearcher-Web-QwQ-v1", "ASearcher-Web-QwQ-v2")
METRIC_PREFERENCE = ("judge", "f1", "em", "cem")
COLUMNS = [
    "pair",
    "benchmark",
    "in_distribution",
    "metric",
    "statistic",
    "before",
    "after",
    "diff",
    "paper_before",
    "paper_after",
    "paper_diff",
    "paper_row",
    "note",
]


def _metric(a: list[str], b: list[str]) -> str | None:
    common = [m for m in a if m in b]
    return next((m for m in METRIC_PREFERENCE if m in common), common[0] if common else None)


def build_table(run: Run) -> tuple[Table, list[dict[str, Any]]]:
    """The table, and per pair the data of its figure panel."""
    t = Table(
        title=f"Before vs after RL (Fig. 8), {run.label}",
        columns=COLUMNS,
        caption="Values in percent; diff = after - before. In-distribution: the RL training questions. The paper's "
        "numbers are Fig. 8's (QwQ-32B before RL -> ASearcher-Web-QwQ-v2, LLM-as-judge), where the benchmark is one of "
        "its three.",
    )
    flagged = in_distribution_names(run)
    panels = []
    pairs = derived_pairs(run)
    if not pairs:
        t.add_missing(
            Missing(
                f"{run.run_dir}/train/final",
                "rule train, evaluated as a model of `models` (or set report.pairs)"
                + ("" if run.cfg.rl.enabled else "; rl.enabled is false"),
            )
        )
    expected = list(dict.fromkeys([*run.cfg.eval.benchmarks, *sorted(flagged)]))
    for before, after in pairs:
        label = f"{before} -> {after}"
        found_b, found_a = run.evaluated(before), run.evaluated(after)
        for bench in expected:
            for model, found in ((before, found_b), (after, found_a)):
                if bench not in found:
                    t.add_missing(Missing(str(run.eval_path(model, bench)), "rule eval"))
        loaded = {b: (load_eval(found_b[b]), load_eval(found_a[b])) for b in found_b if b in found_a}
        labelled = {
            b: is_in_distribution(b, flagged) or rb.in_distribution or ra.in_distribution
            for b, (rb, ra) in loaded.items()
        }
        panel: dict[str, Any] = {"pair": label, "models": (before, after), "bars": []}
        # in-distribution benchmarks last, so the figure reads test sets, then training questions
        for bench in sorted(loaded, key=lambda b: (labelled[b], b)):
            rb, ra = loaded[bench]
            metric = _metric(rb.metrics(), ra.metrics())
            ind = labelled[bench]
            if metric is None:
                t.add(pair=label, benchmark=bench, in_distribution=ind, note="no metric in common")
                continue
            values = {}
            for kind in ("avg", "pass"):
                vb, va = rb.value(metric, kind), ra.value(metric, kind)
                note = "" if rb.k == ra.k else f"k differs: {rb.k} before, {ra.k} after"
                pb = pa = None
                if bench in HARD_BENCHMARKS and metric == "judge":
                    pb = paper_value("fig8", PAPER_BEFORE, bench, "judge", f"{kind}@4")
                    pa = paper_value("fig8", PAPER_AFTER[-1], bench, "judge", f"{kind}@4")
                t.add(
                    pair=label,
                    benchmark=bench,
                    in_distribution=ind,
                    metric=metric,
                    statistic=f"{kind}@{ra.k}",
                    before=vb,
                    after=va,
                    diff=None if vb is None or va is None else va - vb,
                    paper_before=pb.value if pb else None,
                    paper_after=pa.value if pa else None,
                    paper_diff=pa.value - pb.value if pb and pa else None,
                    paper_row=f"{PAPER_BEFORE} -> {PAPER_AFTER[-1]}" if pb else None,
                    note=note,
                )
                values[kind] = (vb, va, ra.k)
            panel["bars"].append({"benchmark": bench, "metric": metric, "in_distribution": ind, **values})
        panels.append(panel)
    return t, panels


def _suite_panel(ax: Any, panel: dict[str, Any], missing: list[str]) -> None:
    bars = panel["bars"]
    if not bars:
        figures.message(ax, missing or ["no benchmark evaluated for both models"], panel["pair"])
        return
    labels = [
        f"{b['benchmark']}\n{b['metric']}" + ("\n(in-distribution)" if b["in_distribution"] else "")
        for b in bars
    ]
    k = bars[0]["avg"][2]
    figures.bars(
        ax,
        labels,
        [
            (f"before: avg@{k}", [b["avg"][0] for b in bars], {"color": "tab:blue", "alpha": 0.55}),
            (f"after: avg@{k}", [b["avg"][1] for b in bars], {"color": "tab:orange", "alpha": 0.55}),
            (f"before: pass@{k}", [b["pass"][0] for b in bars], {"color": "tab:blue"}),
            (f"after: pass@{k}", [b["pass"][1] for b in bars], {"color": "tab:orange"}),
        ],
        show_values=True,
    )
    for i, b in enumerate(bars):
        if b["in_distribution"]:
            ax.axvspan(i - 0.45, i + 0.45, color="0.92", zorder=0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (%)")
    ax.set_xlabel("benchmark, metric")
    ax.set_title(f"suite: {panel['pair']}")
    ax.legend(fontsize=7, loc="upper left")


def _paper_panel(ax: Any) -> None:
    series = []
    for name, color in ((PAPER_BEFORE, "0.7"), (PAPER_AFTER[0], "tab:cyan"), (PAPER_AFTER[1], "tab:green")):
        for kind, alpha in (("avg@4", 0.55), ("pass@4", 1.0)):
            vals = []
            for bench in HARD_BENCHMARKS:
                c = paper_value("fig8", name, bench, "judge", kind)
                vals.append(c.value if c else None)
            short = "before RL" if name == PAPER_BEFORE else name.rsplit("-", 1)[-1]
            series.append((f"{short}: {kind}", vals, {"color": color, "alpha": alpha}))
    figures.bars(ax, list(HARD_BENCHMARKS), series)
    ax.set_ylim(0, 100)
    ax.set_ylabel("LLM-as-judge (%)")
    ax.set_xlabel("benchmark")
    ax.set_title(f"paper: {TABLES['fig8']}")
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def write_before_after(config: str | Path, out_dir: str | Path) -> list[Path]:
    """before_after_rl.{csv,md} and before_after_rl.{png,pdf} under out_dir."""
    run = Run.load(config)
    out = Path(out_dir)
    t, panels = build_table(run)
    paths = t.write(out / NAME)
    n = max(1, len(panels))
    fig, axes = figures.subplots(1, n + 1, (7 * n + 7, 5.5))
    if not panels:
        figures.message(axes[0], t.missing, "suite: no before/after pair")
    for ax, panel in zip(axes, panels, strict=False):
        own = [m for m in t.missing if any(f"/eval/{name}/" in m for name in panel["models"])]
        _suite_panel(ax, panel, own)
    _paper_panel(axes[-1])
    caption = (
        f"Before vs after RL (Fig. 8), made by {run.label}. Left: each pair of models on the benchmarks both were "
        "evaluated on (light bars avg@k, dark bars pass@k; shaded: in-distribution, the RL training questions). "
        "Right: the paper's Fig. 8 (QwQ-32B prompt agent before RL vs ASearcher-Web-QwQ v1 / v2, LLM-as-judge)."
    )
    paths += figures.save(fig, out / NAME, caption)
    return paths
