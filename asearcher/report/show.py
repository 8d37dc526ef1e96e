"""Showing a product inside a notebook: figures as images, tables as Markdown (IPython is imported only here,
so the rest of the package works without Jupyter)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def show(paths: Iterable[str | Path]) -> None:
    from IPython.display import Image, Markdown, display

    for p in map(Path, paths):
        if p.suffix == ".png":
            display(Image(filename=str(p)))
        elif p.suffix == ".md":
            display(Markdown(p.read_text(encoding="utf-8")))
