"""The protocol card: everything needed to know how an evaluation number was produced.

It is stored in aggregate.json (and, from the start of a run, in protocol.json so that a resumed run can
refuse to mix samples produced under a different protocol).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError

# Fields that must match for samples of two runs to be mixed by a resume. Sample counts and the code version
# may change (a larger --max-samples extends a run; a bug fix in unrelated code should not force a redo).
RESUME_KEYS = (
    "model",
    "agent",
    "prompt_hash",
    "retriever",
    "search_backend",
    "judge",
    "judge_details",
    "temperature",
    "top_p",
    "max_new_tokens",
    "k",
    "seeds",
    "benchmark",
    "sealed",
)
# Compared only when the saved card has them too: a run started before the card named them still resumes.
OPTIONAL_RESUME_KEYS = ("tools",)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> str:
    """Package version plus the git commit of the checkout (with '-dirty' for uncommitted changes), if any."""
    from asearcher import __version__

    return _code_version(str(__version__))


def _code_version(pkg: str) -> str:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # read-only: never refresh/lock the index
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if sha.returncode != 0:
            return pkg
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        suffix = "-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
        return f"{pkg}+g{sha.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        return pkg


def build_card(
    *,
    model_name: str,
    engine: dict[str, Any],
    agent: dict[str, Any],
    prompt_hash: str,
    retriever: dict[str, Any],
    search_backend: str,
    judge: str | None,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    k: int,
    seeds: list[int],
    benchmark: str,
    benchmark_file: str | Path | None,
    n_questions: int,
    sealed: bool,
    judge_details: dict[str, Any] | None = None,
    eval_agent: dict[str, Any] | None = None,
    setting: str | None = None,
    version: str | None = None,
    tools: dict[str, Any] | None = None,
    tools_details: dict[str, Any] | None = None,
    editions: dict[str, str] | None = None,
    paper_edition: str | None = None,
    in_distribution: bool = False,
) -> dict[str, Any]:
    """The protocol card of one (model, setting, benchmark) evaluation.

    `agent` is the agent config the evaluation ran (the `agent` section with `eval.agent` applied);
    `eval_agent` says where its evaluation-only values came from ({defaults, overrides, training_values});
    `judge_details` names the judge prompt (file name and sha256) among the judge's settings.
    `tools` names what the agents searched and read with (the backend, the search API, the reader; compared on
    resume); `tools_details` is the tool backend's own description (the web tools: record mode and folder, limits,
    allowlist), not compared: a replay may finish a recorded run. `editions` (sha256 -> edition) and `paper_edition` come from the benchmark's spec:
    the card says which edition the file is, and whether it is the one the paper evaluated. `in_distribution`: the
    questions are ones the model trained on (the benchmark section says `in_distribution: true`; absent otherwise).
    """
    bfile = Path(benchmark_file) if benchmark_file else None
    sha = file_sha256(bfile) if bfile and bfile.is_file() else None
    bench: dict[str, Any] = {"name": benchmark, "file": bfile.name if bfile else None, "sha256": sha}
    bench.update(benchmark_edition(sha, editions, paper_edition))
    if in_distribution:  # only when true: cards of earlier runs (without the key) still resume
        bench["in_distribution"] = True
    return {
        "model": {"name": model_name, **engine},
        "setting": setting,
        "agent": agent,
        "eval_agent": eval_agent,
        "prompt_hash": prompt_hash,
        "retriever": retriever,
        "search_backend": search_backend,
        "tools": tools,
        "tools_details": tools_details,
        "judge": judge,
        "judge_details": judge_details,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "k": k,
        "seeds": list(seeds),
        "n_questions": n_questions,
        "n_samples": n_questions * k,
        "benchmark": bench,
        "sealed": sealed,
        "code_version": version if version is not None else code_version(),
    }


def benchmark_edition(
    sha256: str | None, editions: dict[str, str] | None, paper_edition: str | None
) -> dict[str, Any]:
    """The card's edition fields: which edition the file is (by its sha256), and whether it is the paper's.

    Only benchmarks whose spec lists editions get them (xBench-DeepSearch: later editions score differently, so a
    number on one is not comparable with the paper's number on another). An unlisted file is edition "unknown".
    """
    if not editions and paper_edition is None:
        return {}
    edition = (editions or {}).get(sha256 or "", "unknown")
    return {
        "edition": edition,
        "paper_edition": paper_edition,
        "comparable_with_paper": None if paper_edition is None else edition == paper_edition,
    }


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Raise if a resumed run would mix samples produced under a different protocol."""
    keys = RESUME_KEYS + tuple(k for k in OPTIONAL_RESUME_KEYS if k in saved)
    diffs = [k for k in keys if saved.get(k) != current.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: was {saved.get(k)!r}, now {current.get(k)!r}" for k in diffs)
        raise UserFacingError(
            f"{where} holds samples from a different evaluation protocol ({detail}). "
            "Use another --output directory, or delete that directory to start over."
        )
