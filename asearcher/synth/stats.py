"""Statistics of a synthesis run: what the paper's Fig. 5 shows, and the yield at every filter.

Fig. 5 reads: supporting facts per question, injections and fuzzes per question, and the reasoner's no-tool
accuracy. The funnel counts how many candidates survive each step: generated, valid, unique (accepted), needing
tools, selected. Rejections are counted by reason, so a run with no yield says why.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from .records import SeedRecord

# Which step of the funnel a rejection reason belongs to (the rest happen while generating the candidate).
_VALIDITY = ("invalid", "check_valid:")
_UNIQUENESS = ("not_unique", "check_alternative:")


def _step(reason: str) -> str:
    if reason.startswith(_VALIDITY):
        return "validity"
    if reason.startswith(_UNIQUENESS):
        return "uniqueness"
    return "generation"


def _hist(values: list[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(collections.Counter(values).items())}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def compute_stats(records: list[SeedRecord], *, planned: int, max_per_seed: int) -> dict[str, Any]:
    seeds = collections.Counter(r.status for r in records)
    seed_reasons = collections.Counter(r.reason for r in records if r.status == "rejected")
    edit_reasons: collections.Counter[str] = collections.Counter()
    funnel = collections.Counter()
    accepted, selected = [], []
    calls: collections.Counter[str] = collections.Counter()
    for rec in records:
        calls.update(rec.calls)
        for e in rec.edits:
            if e.action in ("seed", "exit") or e.turn == 0:
                continue
            funnel["proposed"] += 1
            if e.outcome == "rejected":
                edit_reasons[e.reason] += 1
                funnel[f"rejected_{_step(e.reason)}"] += 1
        accepted += [v for v in rec.variants if v.action != "seed"]
        selected += rec.selected(max_per_seed)
    generated = funnel["proposed"] - funnel["rejected_generation"]
    valid = generated - funnel["rejected_validity"]
    all_variants = [v for r in records for v in r.variants]
    return {
        "seeds": {
            "planned": planned,
            "finished": len(records),
            "grown": seeds.get("done", 0),
            "rejected": seeds.get("rejected", 0),
            "by_kind": dict(collections.Counter(r.kind for r in records)),
            "rejected_by_reason": dict(seed_reasons.most_common()),
        },
        "yield": {
            "edits_proposed": funnel["proposed"],
            "candidates_generated": generated,
            "valid": valid,
            "unique_accepted": len(accepted),
            "need_tools": sum(1 for v in accepted if v.needs_tools),
            "selected": len(selected),
            "selected_per_seed": round(len(selected) / len(records), 4) if records else 0.0,
        },
        "edits_rejected_by_reason": dict(edit_reasons.most_common()),
        "selected_questions": {  # the paper's Fig. 5, over the training file's questions
            "supporting_facts": _hist([v.statements for v in selected]),
            "injections": _hist([v.injections for v in selected]),
            "fuzzes": _hist([v.fuzzes for v in selected]),
            "mean_supporting_facts": _mean([v.statements for v in selected]),
            "mean_injections": _mean([v.injections for v in selected]),
            "mean_fuzzes": _mean([v.fuzzes for v in selected]),
        },
        "no_tool_accuracy": {  # every verified question (seeds included): how often the reasoner solved it alone
            "histogram": _hist([v.no_tool_correct for v in all_variants]),
            "n": all_variants[0].n if all_variants else None,
        },
        "calls": dict(sorted(calls.items())),
    }


def plot_stats(stats: dict[str, Any], path: str | Path) -> None:
    """Fig. 5-style panels (supporting facts, injections/fuzzes, no-tool accuracy) and the yield funnel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from asearcher.utils.atomic import atomic_path

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    sel = stats["selected_questions"]

    def bars(ax, hist: dict[str, int], title: str, xlabel: str, top: int | None = None) -> None:
        ax.bar([int(k) for k in hist], list(hist.values()))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if top is not None:
            ax.set_xlim(-0.5, top + 0.5)
        if not hist:
            ax.text(0.5, 0.5, "no selected questions", ha="center", va="center", transform=ax.transAxes)

    bars(axes[0], sel["supporting_facts"], "Supporting facts", "facts per question")
    inj, fuz = sel["injections"], sel["fuzzes"]
    axes[1].bar([int(k) - 0.2 for k in inj], list(inj.values()), width=0.4, label="injections")
    axes[1].bar([int(k) + 0.2 for k in fuz], list(fuz.values()), width=0.4, label="fuzzes")
    axes[1].set_title("Edits per question")
    axes[1].set_xlabel("count")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend()
    acc = stats["no_tool_accuracy"]
    bars(axes[2], acc["histogram"], "No-tool accuracy", f"correct of {acc['n'] or 'n'}", acc["n"])
    y = stats["yield"]
    steps = ["edits_proposed", "candidates_generated", "valid", "unique_accepted", "need_tools", "selected"]
    axes[3].barh([s.replace("_", " ") for s in steps][::-1], [y[s] for s in steps][::-1])
    axes[3].set_title(f"Yield ({stats['seeds']['finished']} seeds)")
    fig.tight_layout()
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
