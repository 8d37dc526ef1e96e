"""Saved training rollouts: a sample of the trajectories each policy version was trained on, so the paper's
training-dynamics figures (Fig. 6, 9, 10 and the keyword counts of Fig. 11) can be drawn from a run.

    OUTPUT/rollouts/v{version:05d}.jsonl.gz     gzip JSONL, one line per saved trajectory

`version` is the policy version the batch was trained from (file v00000: the batch of the first step, sampled by
the initial policy; the step that trains it logs `step` = version + 1). Config `rl.save_rollouts`: `per_version`
trajectories (round-robin over the batch's groups, in question draw order) of every `every`-th version. A line:

    {"version", "step", "qid", "index" (question draw number), "sample_idx", "question", "answers", "reward",
     "reward_info", "submit_version", "token_versions" (distinct policy versions of the generated tokens),
     "finish", "prediction", "stats" (turns, searches, accesses, tool_calls, tokens_per_traj),
     "events": [{"type": "llm", "purpose", "text" (the decoded output), "tokens", "prompt_tokens",
                 "finish_reason"} | {"type": "tool", "tool", "argument", "ok", "error", "urls" (search) |
                 "chars" (access) | "result" (with tool_results)}]}

Each file is written whole and atomically (a reader sees a complete file or none). On resume from the checkpoint
of step N the files of versions >= N (written after that checkpoint; those steps are redone) are removed, the
earlier ones kept, so every version has at most one file and it belongs to the steps in metrics.jsonl.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from asearcher.agent.trajectory import LLMCall
from asearcher.rl.algo.types import Group, ScoredTrajectory
from asearcher.rl.system.metrics_log import trajectory_counts
from asearcher.utils.atomic import atomic_write_bytes
from asearcher.utils.secrets import redact_obj

ROLLOUT_DIR = "rollouts"
_NAME = re.compile(r"^v(\d+)\.jsonl\.gz$")
_TAG = re.compile(r"</?[A-Za-z_]+>")


def rollout_path(run_dir: str | Path, version: int) -> Path:
    return Path(run_dir) / ROLLOUT_DIR / f"v{version:05d}.jsonl.gz"


def saved_versions(run_dir: str | Path) -> list[int]:
    """Versions with a saved rollout file, ascending."""
    d = Path(run_dir) / ROLLOUT_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := _NAME.match(p.name)))


def select_samples(batch: list[Group], n: int) -> list[tuple[Group, ScoredTrajectory]]:
    """Up to n trajectories: sample 0 of every group (in batch order), then sample 1 of every group, ..."""
    out: list[tuple[Group, ScoredTrajectory]] = []
    width = max((len(g.samples) for g in batch), default=0)
    for i in range(width):
        for g in batch:
            if len(out) >= n:
                return out
            if i < len(g.samples):
                out.append((g, g.samples[i]))
    return out


def _event(e: Any, tool_results: bool) -> dict[str, Any]:
    if isinstance(e, LLMCall):
        return {
            "type": "llm",
            "purpose": e.purpose,
            "text": e.output_text,
            "tokens": len(e.output_ids),
            "prompt_tokens": len(e.input_ids),
            "finish_reason": e.finish_reason,
        }
    d: dict[str, Any] = {"type": "tool", "tool": e.tool, "argument": e.argument, "ok": e.ok, "error": e.error}
    if tool_results:
        d["result"] = e.result
    elif isinstance(e.result, list):
        d["urls"] = [h.get("url") if isinstance(h, dict) else None for h in e.result]
    elif isinstance(e.result, str):
        d["chars"] = len(e.result)
    return d


def trajectory_record(
    group: Group, sample: ScoredTrajectory, version: int, tool_results: bool = False
) -> dict[str, Any]:
    """The saved form of one trained trajectory (see the module docstring)."""
    t = sample.trajectory
    versions = sorted({v for c in t.llm_calls for v in c.output_versions if v >= 0})
    return {
        "version": version,
        "step": version + 1,
        "qid": group.qid,
        "index": group.meta.get("index"),
        "sample_idx": t.sample_idx,
        "question": group.question,
        "answers": list(group.answers),
        "reward": sample.reward,
        "reward_info": sample.reward_info,
        "submit_version": group.submit_version,
        "token_versions": versions,
        "finish": t.finish,
        "prediction": t.prediction,
        "stats": trajectory_counts(t),
        "events": [_event(e, tool_results) for e in t.events],
    }


class RolloutLog:
    """Writes OUTPUT/rollouts/v{version:05d}.jsonl.gz for the saved versions (cfg: RLConfig.save_rollouts).

    `start_version` is the trainer's version when the run (re)starts: files of that version and later were
    written by a crashed run after its last checkpoint and are removed (those steps are redone)."""

    def __init__(self, run_dir: str | Path, cfg: Any, start_version: int = 0):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / ROLLOUT_DIR
        self.per_version = int(cfg.per_version)
        self.every = int(cfg.every)
        self.tool_results = bool(cfg.tool_results)
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                m = _NAME.match(p.name)
                if (m and int(m.group(1)) >= start_version) or (p.name.startswith(".") and p.is_file()):
                    p.unlink()  # a later version, or a crashed write's temp file

    def wants(self, version: int) -> bool:
        return self.per_version > 0 and version % self.every == 0

    def write(self, version: int, batch: list[Group]) -> Path | None:
        """Save the sample of `batch` (the groups trained from `version`), if this version is saved."""
        if not self.wants(version):
            return None
        lines = [
            # redacted: tool errors and model text may quote a response body that echoed a key
            json.dumps(redact_obj(trajectory_record(g, s, version, self.tool_results)), default=str) + "\n"
            for g, s in select_samples(batch, self.per_version)
        ]
        path = rollout_path(self.run_dir, version)
        # mtime=0: the same trajectories give the same bytes (a redone step rewrites an identical file)
        atomic_write_bytes(path, gzip.compress("".join(lines).encode("utf-8"), mtime=0))
        return path


def iter_saved_rollouts(
    run_dir: str | Path, versions: Iterable[int] | None = None
) -> Iterator[dict[str, Any]]:
    """Every saved trajectory record of a run (or of `versions`), in version order then file order."""
    want = None if versions is None else set(versions)
    for v in saved_versions(run_dir):
        if want is not None and v not in want:
            continue
        with gzip.open(rollout_path(run_dir, v), "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def count_keywords(text: str, keywords: Iterable[str], strip_tags: bool = True) -> dict[str, int]:
    """Case-insensitive whole-word (or whole-phrase) occurrences of each keyword in `text`; with strip_tags the
    action tags themselves (`<search>`, `</access>`, ...) are not counted, only the words the model wrote."""
    if strip_tags:
        text = _TAG.sub(" ", text)
    return {k: len(re.findall(rf"(?<!\w){re.escape(k)}(?!\w)", text, flags=re.IGNORECASE)) for k in keywords}


def keyword_counts(
    run_dir: str | Path, keywords: Iterable[str], *, per_trajectory: bool = True, strip_tags: bool = True
) -> dict[int, dict[str, float]]:
    """Fig. 11 data: {version: {keyword: count}} over the LLM outputs of each version's saved trajectories, as
    the mean per trajectory (default) or the total. Each entry also holds "trajectories" (how many were read)."""
    keywords = list(keywords)
    if "trajectories" in keywords:
        raise ValueError("'trajectories' is the per-version count in keyword_counts' result, not a keyword")
    out: dict[int, dict[str, float]] = {}
    for rec in iter_saved_rollouts(run_dir):
        row = out.setdefault(int(rec["version"]), {"trajectories": 0, **{k: 0 for k in keywords}})
        row["trajectories"] += 1
        text = "\n".join(e.get("text", "") for e in rec["events"] if e.get("type") == "llm")
        for k, n in count_keywords(text, keywords, strip_tags).items():
            row[k] += n
    if per_trajectory:
        for row in out.values():
            for k in keywords:
                row[k] = row[k] / row["trajectories"]
    return out
