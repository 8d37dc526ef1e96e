"""QA-synthesis statistics (the paper's Fig. 5) from a run's synth/stats.json (asearcher.synth.stats): supporting
facts, injections and fuzzes per selected question, the reasoner's no-tool accuracy, and the yield at each filter,
beside the paper's numbers (§3.2.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import figures
from .paper import figure_reading, paper_figures
from .runs import Missing, Run, read_json
from .tables import Table

NAME = "synthesis"
FUNNEL = ("edits_proposed", "candidates_generated", "valid", "unique_accepted", "need_tools", "selected")


def _paper() -> dict[str, Any]:
    return paper_figures().get("fig5") or {}


def synthesis_table(run: Run, stats: dict[str, Any] | None, missing: Missing | None) -> Table:
    t = Table(
        title=f"QA synthesis (Fig. 5), {run.label}",
        columns=["quantity", "suite", "paper", "note"],
        digits=3,
        caption="The synthesis funnel and the selected questions' statistics; the paper's numbers from §3.2.2.",
    )
    if missing:
        t.add_missing(missing)
        return t
    assert stats is not None
    p = _paper()
    seeds, y, sel = stats.get("seeds", {}), stats.get("yield", {}), stats.get("selected_questions", {})
    t.add(quantity="seeds", suite=seeds.get("finished"), paper=p.get("seed_questions"), note="finished of planned "
          f"{seeds.get('planned')}")  # fmt: skip
    for key in FUNNEL:
        paper = p.get("selected_questions") if key == "selected" else None
        t.add(quantity=key.replace("_", " "), suite=y.get(key), paper=paper)
    per_seed = None
    if p.get("selected_questions") and p.get("seed_questions"):
        per_seed = p["selected_questions"] / p["seed_questions"]
    t.add(quantity="selected per seed", suite=y.get("selected_per_seed"), paper=per_seed)
    t.add(quantity="mean supporting facts", suite=sel.get("mean_supporting_facts"), note=f"paper: mode "
          f"{p.get('supporting_facts_mode')}")  # fmt: skip
    t.add(
        quantity="mean injections", suite=sel.get("mean_injections"), paper=p.get("mean_injections_selected")
    )
    t.add(quantity="mean fuzzes", suite=sel.get("mean_fuzzes"), paper=p.get("mean_fuzzes_selected"))
    for reason, n in list((seeds.get("rejected_by_reason") or {}).items())[:5]:
        t.add(quantity=f"seeds rejected: {reason}", suite=n)
    for reason, n in list((stats.get("edits_rejected_by_reason") or {}).items())[:5]:
        t.add(quantity=f"edits rejected: {reason}", suite=n)
    if stats.get("note"):
        t.notes.append(str(stats["note"]))
    return t


def _hist(ax: Any, hist: dict[str, int], empty: list[str], title: str, xlabel: str) -> None:
    if not hist:
        figures.message(ax, empty, title)
        return
    ax.bar([int(k) for k in hist], list(hist.values()), color="tab:blue")
    ax.set(title=title, xlabel=xlabel, ylabel="questions (count)")


def write_synthesis(config: str | Path, out_dir: str | Path) -> list[Path]:
    """synthesis.{csv,md,png,pdf} under out_dir."""
    run = Run.load(config)
    out = Path(out_dir)
    path = run.run_dir / "synth" / "stats.json"
    missing = None
    if not path.is_file():
        missing = Missing(
            str(path), "rule synth" + ("" if run.cfg.synth.enabled else " (synth.enabled is false)")
        )
    stats = read_json(path) if missing is None else None
    paths = synthesis_table(run, stats, missing).write(out / NAME)
    caption = (
        f"QA-synthesis statistics as in the paper's Fig. 5, made by {run.label} ({path}). Supporting facts, "
        "injections and fuzzes per selected question (dashed: the paper's means), the reasoner's no-tool accuracy "
        "over every verified question, and the yield at each filter. "
        + figure_reading("fig5", "no_tool_accuracy")
    )
    if missing:
        return paths + figures.missing_figure(out / NAME, "QA synthesis", [missing.line()], caption)
    assert stats is not None
    p = _paper()
    sel = stats.get("selected_questions", {})
    reasons = stats.get("seeds", {}).get("rejected_by_reason") or {}
    why = [f"seeds rejected: {r} ({n})" for r, n in list(reasons.items())[:4]]
    if stats.get("note"):
        caption += f" This run: {stats['note']}."
    fig, (a, b, c, d) = figures.subplots(2, 2, (13, 8.5))
    facts = f"supporting facts (paper: mostly {p.get('supporting_facts_mode')})"
    _hist(
        a,
        sel.get("supporting_facts") or {},
        ["no selected question", *why],
        facts,
        "facts per question (count)",
    )
    inj, fuz = sel.get("injections") or {}, sel.get("fuzzes") or {}
    if inj or fuz:
        b.bar(
            [int(k) - 0.2 for k in inj], list(inj.values()), width=0.4, label="injections", color="tab:blue"
        )
        b.bar([int(k) + 0.2 for k in fuz], list(fuz.values()), width=0.4, label="fuzzes", color="tab:orange")
        for key, color in (("mean_injections_selected", "tab:blue"), ("mean_fuzzes_selected", "tab:orange")):
            if p.get(key) is not None:
                b.axvline(p[key], color=color, ls="--", label=f"paper mean {key.split('_')[1]}: {p[key]}")
        b.set(title="edits per question", xlabel="edits per question (count)", ylabel="questions (count)")
        b.legend(fontsize=7)
    else:
        figures.message(b, ["no selected question", *why], "edits per question")
    acc = stats.get("no_tool_accuracy") or {}
    _hist(c, acc.get("histogram") or {}, ["no verified question", *why],
          f"no-tool accuracy (paper: {p.get('no_tool_accuracy')})", f"correct no-tool answers (of {acc.get('n') or 'n'})")  # fmt: skip
    y = stats.get("yield") or {}
    d.barh(
        [k.replace("_", " ") for k in FUNNEL][::-1], [y.get(k, 0) for k in FUNNEL][::-1], color="tab:green"
    )
    d.set(title=f"yield ({stats.get('seeds', {}).get('finished', 0)} seeds; paper: {p.get('selected_questions')} "
          f"selected from {p.get('seed_questions')})", xlabel="candidates (count)")  # fmt: skip
    d.set_xlim(left=0, right=max(1, *(y.get(k, 0) for k in FUNNEL)) * 1.1)
    d.tick_params(axis="y", labelsize=8)
    return paths + figures.save(fig, out / NAME, caption)
