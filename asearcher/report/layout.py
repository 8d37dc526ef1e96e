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


NOTEBOOKS: dict[str, tuple[Product, ...]] = {
    # notebooks/evaluation.ipynb: Tables 2-4 against the paper, before vs after RL (Fig. 8)
    "evaluation": (
        Product("table2_local", TABLE, "main_results", "Main results"),
        Product("table3_web", TABLE, "main_results", "Main results"),
        Product("table4_hard", TABLE, "main_results", "Main results"),
        Product("main_results", FIGURE, "main_results", "Main results"),
        Product("before_after_rl", TABLE, "before_after", "Before vs after RL"),
        Product("before_after_rl", FIGURE, "before_after", "Before vs after RL"),
    ),
    # notebooks/training.ipynb: training dynamics (Fig. 6, 9, 10), keywords (Fig. 11), QA synthesis (Fig. 5)
    "training": (
        Product("training_dynamics", TABLE, "training_dynamics", "Training"),
        Product("training_dynamics", FIGURE, "training_dynamics", "Training"),
        Product("keywords", TABLE, "keywords", "Training"),
        Product("keywords", FIGURE, "keywords", "Training"),
        Product("synthesis", TABLE, "synthesis", "QA synthesis"),
        Product("synthesis", FIGURE, "synthesis", "QA synthesis"),
    ),
    # notebooks/sweep.ipynb, once per sweep (results/report/sweeps/<sweep>/)
    "sweep": (
        Product("sweep", TABLE, "sweep", "Sweeps"),
        Product("sweep", FIGURE, "sweep", "Sweeps"),
        Product("throughput", FIGURE, "throughput", "Sweeps"),
    ),
}


def files(notebook: str) -> list[str]:
    """Every file name a notebook writes (besides the executed notebook itself)."""
    return [p.stem + ext for p in NOTEBOOKS[notebook] for ext in p.extensions]
