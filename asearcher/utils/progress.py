"""Progress bars for long work, with one switch for all of them.

`asearcher --no-progress ...` (or ASEARCHER_NO_PROGRESS=1) turns every bar off, in this process and in the
processes it starts (Ray workers, the retrieval server), so that Snakemake rule logs hold log lines, not bars.
"""

from __future__ import annotations

import os
from typing import Any

from tqdm import tqdm

NO_PROGRESS_ENV = "ASEARCHER_NO_PROGRESS"


def progress_enabled() -> bool:
    return os.environ.get(NO_PROGRESS_ENV, "").strip().lower() not in ("1", "true", "yes")


def disable_progress() -> None:
    """Off here and in child processes, including the bars of libraries (Hugging Face downloads and saves, and
    any other tqdm bar that is not given an explicit `disable`)."""
    os.environ[NO_PROGRESS_ENV] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"


def progress(*args: Any, disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar, off when progress is switched off (or when `disable`)."""
    return tqdm(*args, disable=disable or not progress_enabled(), **kwargs)
