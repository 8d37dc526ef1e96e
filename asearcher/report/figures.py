"""Figure helpers: every figure carries a caption naming the run that made it, a panel whose inputs are missing
shows the message instead of empty axes, and each figure is saved as PNG and PDF."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asearcher.utils.atomic import atomic_path

SUITE_COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
)
PAPER_COLOR = "0.55"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (10, 5)) -> tuple[Any, list[Any]]:
    """A figure and its axes as a flat list."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return fig, [a for row in axes for a in row]


def message(ax: Any, lines: Sequence[str], title: str = "") -> None:
    """Write `lines` (e.g. the missing inputs) in an empty panel."""
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    text = "\n".join(textwrap.fill(line, 70) for line in lines)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)


def save(fig: Any, stem: str | Path, caption: str) -> list[Path]:
    """STEM.png and STEM.pdf, with `caption` under the panels. Fixed margins rather than tight_layout: measuring
    every text's extent costs seconds per figure on a busy 2-core machine."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    wrapped = textwrap.fill(caption, int(fig.get_figwidth() * 16))
    n_lines = wrapped.count("\n") + 1
    height = fig.get_figheight()
    caption_h = (0.16 * n_lines + 0.1) / height  # figure fraction of the caption
    rows = (
        len({ax.get_subplotspec().rowspan.start for ax in fig.axes if ax.get_subplotspec() is not None}) or 1
    )
    fig.subplots_adjust(
        left=0.6 / fig.get_figwidth() * 1.3,
        right=0.985,
        top=1 - 0.45 / height,
        bottom=caption_h + 1.0 / height,  # room for rotated tick labels and the x label
        wspace=0.28,
        hspace=0.45 if rows > 1 else 0.2,
    )
    fig.text(0.01, 0.01, wrapped, ha="left", va="bottom", fontsize=8)
    paths = []
    for ext in (".png", ".pdf"):
        path = stem.with_suffix(ext)
        with atomic_path(path) as tmp:  # the temp name keeps the extension matplotlib reads
            fig.savefig(tmp, dpi=100)
        paths.append(path)
    pyplot().close(fig)
    return paths


def missing_figure(stem: str | Path, title: str, lines: Sequence[str], caption: str) -> list[Path]:
    """A figure whose inputs are all missing: the message, the caption, nothing else."""
    fig, (ax,) = subplots(1, 1, (9, 3.5))
    message(ax, lines, title)
    return save(fig, stem, caption)


def bars(
    ax: Any,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], dict[str, Any]]],
    show_values: bool = False,
) -> None:
    """Grouped bars: one group per label, one bar per series (name, values, bar kwargs); None leaves a gap.
    `show_values`: print each bar's value above it (a bar of 0 is otherwise invisible)."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values, kw) in enumerate(series):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pts:
            drawn = ax.bar([x for x, _ in pts], [v for _, v in pts], width=width, label=name, **kw)
            if show_values:
                ax.bar_label(drawn, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(range(len(labels)))
    multiline = any("\n" in label for label in labels)
    ax.set_xticklabels(labels, rotation=0 if multiline else 20, ha="center" if multiline else "right")
