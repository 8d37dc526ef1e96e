"""The report's products, by notebook: the file names each notebook writes under its output folder, the caption
of each (workflow/report/<caption>.rst) and its category in `snakemake --report`. workflow/rules/report.smk
declares the same files as the rules' outputs, so the notebooks and the DAG cannot disagree on them."""

from __future__ import annotations

from dataclasses import dataclass

TABLE = (".csv", ".md")
FIGURE = (".png", ".pdf")


@dataclass(frozen=True)
class Product:
    stem: str  # file name without extension, inside the notebook's output folder
    extensions: tuple[str, ...]
    caption: str  # workflow/report/<caption>.rst
    category: str

    @property
    def shown(self) -> str:
        """The extension `snakemake --report` shows (the others are downloads beside it)."""
        return ".csv" if self.extensions == TABLE else ".png"


def _table_and_figure(stem: str, caption: str, category: str) -> tuple[Product, Product]:
    """A product written as a table (CSV, Markdown) and a figure (PNG, PDF) of the same stem."""
    return Product(stem, TABLE, caption, category), Product(stem, FIGURE, caption, category)


NOTEBOOKS: dict[str, tuple[Product, ...]] = {
    # notebooks/evaluation.ipynb: Tables 2-4 against the paper, before vs after RL (Fig. 8)
    "evaluation": (
        Product("table2_local", TABLE, "main_results", "Main results"),
        Product("table3_web", TABLE, "main_results", "Main results"),
        Product("table4_hard", TABLE, "main_results", "Main results"),
        Product("main_results", FIGURE, "main_results", "Main results"),
        *_table_and_figure("before_after_rl", "before_after", "Before vs after RL"),
    ),
    # notebooks/training.ipynb: training dynamics (Fig. 6, 9, 10), keywords (Fig. 11), QA synthesis (Fig. 5)
    "training": (
        *_table_and_figure("training_dynamics", "training_dynamics", "Training"),
        *_table_and_figure("keywords", "keywords", "Training"),
        *_table_and_figure("synthesis", "synthesis", "QA synthesis"),
    ),
    # notebooks/sweep.ipynb, once per sweep (results/report/sweeps/<sweep>/)
    "sweep": (
        *_table_and_figure("sweep", "sweep", "Sweeps"),
        Product("throughput", FIGURE, "throughput", "Sweeps"),
    ),
}


def files(notebook: str) -> list[str]:
    """Every file name a notebook writes (besides the executed notebook itself)."""
    return [p.stem + ext for p in NOTEBOOKS[notebook] for ext in p.extensions]
