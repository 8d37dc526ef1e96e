"""Main results against the paper (Tables 2-4): every evaluation of the run's models, beside the paper row it is
compared with (report.paper_rows, else the table's reference row, labelled so), the difference, and the protocol
card of the run that made the number (corpus, retriever, top-k, search backend, judge, k, temperature, prompts).

An evaluation in the local setting goes to Table 2, one with the web tools to Table 3, and GAIA / xBench-DeepSearch /
Frames to Table 4 (the paper evaluates those only on the web). Values are percent, as in the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import figures
from .paper import (
    AVERAGE,
    HARD_BENCHMARKS,
    QA_BENCHMARKS,
    TABLES,
    check_method,
    methods,
    paper_columns,
    paper_value,
    table_cells,
)
from .runs import (
    EvalResult,
    Missing,
    Run,
    in_distribution_names,
    is_in_distribution,
    load_eval,
    protocol_summary,
)
from .tables import Table, markdown_grid

MAIN_TABLES = ("table2", "table3", "table4")
TABLE_FILES = {"table2": "table2_local", "table3": "table3_web", "table4": "table4_hard"}
FIGURE = "main_results"
CARD_COLUMNS = [
    "corpus",
    "retriever",
    "topk",
    "search_backend",
    "judge",
    "k",
    "temperature",
    "prompt_hash",
    "judge_prompt_hash",
    "code_version",
]
# the columns the CSV and the Markdown share (the CSV adds n, the card's fields and the aggregate's path)
_ROW_COLUMNS = [
    "model",
    "setting",
    "benchmark",
    "metric",
    "statistic",
    "suite",
    "paper",
    "diff",
    "paper_row",
    "comparison",
]
COLUMNS = [*_ROW_COLUMNS, "n", "card", *CARD_COLUMNS, "aggregate", "note"]
MD_COLUMNS = [*_ROW_COLUMNS, "card", "note"]
METRIC_LABEL = {"f1": "F1", "judge": "LLM-as-judge"}


def _table(benchmark: str, web: bool) -> str:
    if benchmark in HARD_BENCHMARKS:
        return "table4"
    return "table3" if web else "table2"


def table_of(result: EvalResult) -> str:
    return _table(result.benchmark, result.web)


def compared_row(run: Run, model: str, table: str) -> tuple[str | None, str]:
    """(the paper row `model` is compared with in `table`, 'mapped' | 'reference'), or (None, '')."""
    mapped = run.cfg.report.paper_rows.get(model)
    if mapped:
        check_method(mapped, f"report.paper_rows.{model}")
        if mapped in methods(table):
            return mapped, "mapped"
    ref = run.cfg.report.reference_rows.get(table)
    if ref:
        check_method(ref, f"report.reference_rows.{table}")
        if ref in methods(table):
            return ref, "reference"
    return None, ""


def collect(run: Run) -> tuple[list[EvalResult], list[Missing]]:
    """Every evaluation of the config's models found on disk (any setting), and the model x benchmark
    evaluations of the run's own setting that are missing."""
    flagged = in_distribution_names(run)
    results: list[EvalResult] = []
    missing: list[Missing] = []
    for model in run.cfg.models:
        for setting in run.settings(model) or [run.setting]:
            for bench, path in run.evaluated(model, setting).items():
                result = load_eval(path)
                if not (
                    is_in_distribution(bench, flagged) or result.in_distribution
                ):  # shown in before_after
                    results.append(result)
        if run.cfg.eval.enabled:
            found = run.evaluated(model)
            for bench in run.cfg.eval.benchmarks:  # the test benchmarks (before_after expects the others)
                if bench not in found:
                    missing.append(Missing(str(run.eval_path(model, bench)), "rule eval"))
    return results, missing


def _table_for_missing(run: Run, m: Missing) -> str:
    return _table(Path(m.path).parent.name, run.cfg.tools.backend == "web")


def _none_evaluated(run: Run, table: str) -> Missing:
    models = ",".join(run.cfg.models) or "<model>"
    if table == "table4":
        where = (
            f"{run.results}/eval/{{{models}}}/<web setting>/{{{','.join(HARD_BENCHMARKS)}}}/aggregate.json"
        )
        return Missing(where, "rule eval with the web tools (e.g. configs/paper/eval-web-*.yaml)")
    kind = "local" if table == "table2" else "web"
    where = f"{run.results}/eval/{{{models}}}/<{kind} setting>/<QA benchmark>/aggregate.json"
    how = "rule eval" + (
        " with the web tools (tools.backend: web)" if kind == "web" else " (tools.backend: local)"
    )
    return Missing(where, how)


def _rows(
    run: Run, result: EvalResult, table: str, card: dict[str, Any], card_id: str
) -> list[dict[str, Any]]:
    method, how = compared_row(run, result.model, table)
    base = {
        "model": result.model,
        "setting": result.setting,
        "benchmark": result.benchmark,
        "n": result.aggregate.get("n"),
        "card": card_id,
        "aggregate": str(result.path),
        **card,
    }
    columns = [c for c in paper_columns(table) if c[0] == result.benchmark]
    if not columns:  # a benchmark the paper's table has no column for
        return [
            {**base, "metric": m, "statistic": f"avg@{result.k}", "suite": result.value(m, "avg"),
             "note": f"not in the paper's {TABLES[table].split(':')[0]}"}
            for m in result.metrics()
        ]  # fmt: skip
    rows = []
    for bench, metric, stat in columns:
        notes = []
        suite = result.value(metric, stat)
        if suite is None:
            notes.append(
                "not scored (the LLM judge is off: eval.judge.enabled)"
                if metric == "judge"
                else f"not scored: {metric} is not in the aggregate"
            )
        if stat.startswith("pass@") and result.k != 4:
            notes.append(f"the run's pass@{result.k}, the paper's pass@4")
        paper = paper_value(table, method, bench, metric, stat) if method else None
        if paper is not None and paper.note:
            notes.append(f"paper: {paper.note}")
        rows.append(
            {
                **base,
                "metric": metric,
                "statistic": f"{stat.split('@')[0]}@{result.k}",  # the run's own k
                "suite": suite,
                "paper": paper.value if paper else None,
                "diff": suite - paper.value if (suite is not None and paper is not None) else None,
                "paper_row": method,
                "comparison": how,
                "note": "; ".join(notes),
            }
        )
    return rows


def _average_rows(rows: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    """The suite's mean over the seven QA benchmarks, when a model has all of them, beside the paper's Avg."""
    out = []
    keys = sorted(
        {(r["model"], r["setting"], r["metric"], r["statistic"]) for r in rows if r.get("suite") is not None}
    )
    for model, setting, metric, stat in keys:
        vals = {
            r["benchmark"]: r["suite"]
            for r in rows
            if (r["model"], r["setting"], r["metric"], r["statistic"]) == (model, setting, metric, stat)
            and r.get("suite") is not None
        }
        if not set(QA_BENCHMARKS) <= set(vals):
            continue
        mean = sum(vals[b] for b in QA_BENCHMARKS) / len(QA_BENCHMARKS)
        first = next(r for r in rows if (r["model"], r["setting"]) == (model, setting))
        paper = paper_value(table, first["paper_row"], AVERAGE, metric, "avg") if first["paper_row"] else None
        out.append(
            {
                "model": model,
                "setting": setting,
                "benchmark": AVERAGE,
                "metric": metric,
                "statistic": stat,
                "suite": mean,
                "paper": paper.value if paper else None,
                "diff": mean - paper.value if paper else None,
                "paper_row": first["paper_row"],
                "comparison": first["comparison"],
                "card": first["card"],
            }
        )
    return out


def paper_grid(table: str) -> str:
    """The paper's table as it prints it (rows: methods; cells: F1/LasJ, or Avg@4/Pass@4 for Table 4)."""
    cells = table_cells(table)
    benches = list(dict.fromkeys(c.benchmark for c in cells))
    metrics = list(dict.fromkeys((c.metric, c.statistic) for c in cells))
    rows = []
    for method in methods(table):
        own = {(c.benchmark, c.metric, c.statistic): c for c in cells if c.method == method}
        train = next((c.train_setting for c in own.values() if c.train_setting), "")
        label = f"{method} ({train})" if train else method
        rows.append(
            [label]
            + [
                "/".join(f"{own[(b, *m)].value:.1f}" if (b, *m) in own else "–" for m in metrics)
                for b in benches
            ]
        )
    what = "/".join(f"{METRIC_LABEL.get(m, m)} {s}" for m, s in metrics)
    return markdown_grid(f"The paper's {TABLES[table]} (cells: {what}; paper v4)", ["method", *benches], rows)


def build_tables(run: Run) -> dict[str, Table]:
    results, missing = collect(run)
    cards: dict[tuple, str] = {}
    tables = {}
    for table in MAIN_TABLES:
        t = Table(
            title=f"{TABLES[table]}: the suite beside the paper ({run.label})",
            columns=COLUMNS,
            md_columns=MD_COLUMNS,
            caption="Values in percent. diff = suite - paper. paper_row: the paper's method the model is compared "
            "with (report.paper_rows; 'reference' rows stand in for unmapped models). card: the protocol card of "
            "the evaluation (below; every field is in the CSV).",
        )
        rows: list[dict[str, Any]] = []
        mine = sorted(
            (r for r in results if table_of(r) == table), key=lambda r: (r.model, r.setting, r.benchmark)
        )
        for r in mine:
            summary = protocol_summary(r)
            key = tuple(sorted((k, str(v)) for k, v in summary.items()))
            card_id = cards.setdefault(key, f"C{len(cards) + 1}")
            rows += _rows(run, r, table, summary, card_id)
        rows += _average_rows(rows, table)
        if any(r.get("comparison") == "reference" for r in rows):
            t.notes.append(
                "comparison 'reference': the model is not mapped to a paper row (report.paper_rows), so it is set "
                "beside the table's reference row (report.reference_rows), which it does not claim to reproduce."
            )
        for row in rows:
            t.add(**row)
        for m in missing:
            if _table_for_missing(run, m) == table:
                t.add_missing(m)
        if not mine and not t.missing:  # say what would make this table's numbers
            t.add_missing(_none_evaluated(run, table))
        used = {row.get("card") for row in rows}
        card_rows = [
            [cid] + [dict(key).get(c, "") for c in CARD_COLUMNS] for key, cid in cards.items() if cid in used
        ]
        if card_rows:
            t.extra_md.append(markdown_grid("Protocol cards", ["card", *CARD_COLUMNS], card_rows))
        t.extra_md.append(paper_grid(table))
        tables[table] = t
    return tables


def _primary(table: str) -> tuple[str, str]:
    return ("judge", "avg@4") if table == "table4" else ("f1", "avg")


def _panel(ax: Any, table: str, t: Table) -> None:
    metric, stat = _primary(table)
    rows = [r for r in t.rows if r.get("metric") == metric and r.get("suite") is not None]
    if not rows:
        lines = t.missing or [f"no {METRIC_LABEL[metric]} result of the suite for this table"]
        figures.message(ax, lines, TABLES[table])
        return
    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    series = []
    suites = list(dict.fromkeys((r["model"], r["setting"]) for r in rows))
    for i, (model, setting) in enumerate(suites):
        vals = {r["benchmark"]: r["suite"] for r in rows if (r["model"], r["setting"]) == (model, setting)}
        color = figures.SUITE_COLORS[i % len(figures.SUITE_COLORS)]
        series.append((f"{model} ({setting})", [vals.get(b) for b in benches], {"color": color}))
    for method in dict.fromkeys(r["paper_row"] for r in rows if r.get("paper_row")):
        vals = {r["benchmark"]: r["paper"] for r in rows if r.get("paper_row") == method}
        kw = {"color": figures.PAPER_COLOR, "hatch": "//", "edgecolor": "white"}
        series.append((f"paper: {method}", [vals.get(b) for b in benches], kw))
    figures.bars(ax, benches, series)
    ax.set_ylabel(f"{METRIC_LABEL[metric]} {stat} (%)")
    ax.set_xlabel("benchmark")
    ax.set_ylim(0, 100)
    ax.set_title(TABLES[table])
    ax.legend(fontsize=7, loc="upper right")


def write_main_results(config: str | Path, out_dir: str | Path) -> list[Path]:
    """Tables 2-4 (CSV + Markdown each) and one figure of three panels (PNG + PDF) under out_dir."""
    run = Run.load(config)
    out = Path(out_dir)
    tables = build_tables(run)
    paths: list[Path] = []
    for table, t in tables.items():
        paths += t.write(out / TABLE_FILES[table])
    fig, axes = figures.subplots(1, 3, (18, 5.5))
    for ax, table in zip(axes, MAIN_TABLES, strict=True):
        _panel(ax, table, tables[table])
    caption = (
        f"Main results against the paper (Tables 2-4), made by {run.label}. Bars: the suite's F1 (Tables 2-3) or "
        "LLM-as-judge Avg@4 (Table 4) per benchmark in percent; grey hatched: the paper's row it is compared with "
        "(report.paper_rows, else the table's reference row). Differences and protocol cards: "
        + ", ".join(f"{f}.csv" for f in TABLE_FILES.values())
        + "."
    )
    paths += figures.save(fig, out / FIGURE, caption)
    return paths
