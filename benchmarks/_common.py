"""Helpers the benchmark scripts share: where the mirror corpus is, growth fits and result tables.

Not a benchmark itself (no `main`); scripts import it after putting benchmarks/ on sys.path.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CORPUS_IN_MIRROR = Path("ASearcher-Local-Knowledge") / "wiki_corpus.jsonl"


def mirror_root(arg: str | None) -> Path:
    """The release mirror from --mirror or $ASEARCHER_MIRROR; exits with a message naming both when absent."""
    m = arg or os.environ.get("ASEARCHER_MIRROR")
    if not m:
        sys.exit("no mirror: pass --mirror DIR or set ASEARCHER_MIRROR to the release mirror")
    if not Path(m).is_dir():
        sys.exit(f"no mirror directory at {m} (from --mirror or ASEARCHER_MIRROR)")
    return Path(m)


def mirror_corpus(arg: str | None) -> Path:
    path = mirror_root(arg) / CORPUS_IN_MIRROR
    if not path.is_file():
        sys.exit(f"no corpus at {path}: the mirror lacks {CORPUS_IN_MIRROR}")
    return path


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(a, b) of y = a * x**b, least squares on log y vs log x; None with fewer than two usable points."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0 and y is not None and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    b, log_a = np.polyfit(lx, ly, 1)
    return float(math.exp(log_a)), float(b)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return f"{v:.2e}"
    return str(v)


def print_table(title: str, rows: list[dict[str, Any]], x: str, columns: Sequence[str]) -> dict[str, Any]:
    """Print one row per size `x`, each value with its ratio to the smallest size, then the fitted exponent b
    of every column (y = a * x**b).

    Returns {column: {"a", "b", "ratio_last" (largest / smallest size)} or None when it cannot be fitted}.
    """
    print(f"\n== {title}")
    names = (x, *columns)
    table = []
    for i, r in enumerate(rows):
        cells = []
        for c in names:
            v, v0 = r.get(c), rows[0].get(c)
            ratio = (
                v / v0 if i and isinstance(v, (int, float)) and isinstance(v0, (int, float)) and v0 else None
            )
            cells.append(fmt(v) + (f" ({ratio:.2f}x)" if ratio is not None else ""))
        table.append(cells)
    fits: dict[str, Any] = {}
    xs = [r[x] for r in rows]
    b_cells = ["fit b"]
    for c in columns:
        ys = [r.get(c) for r in rows]
        fit = fit_power_law(xs, ys) if all(isinstance(y, (int, float)) for y in ys) else None
        ratio = ys[-1] / ys[0] if fit and ys[0] else None
        fits[c] = {"a": fit[0], "b": fit[1], "ratio_last": ratio} if fit else None
        b_cells.append(f"{fit[1]:.2f}" if fit else "-")
    table.append(b_cells)
    widths = [max(len(n), *(len(t[k]) for t in table)) for k, n in enumerate(names)]
    for line in (list(names), *table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    return fits


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
