"""What an evaluation writes, under results/eval/<model>/<setting>/<benchmark>/:

- samples.jsonl       one row per (question, sample): prediction, per-metric scores, judge verdict, stats,
                      finish reason, status (ok | error), time. Appended durably as samples finish (the resume
                      log); rewritten sorted and de-duplicated when the run completes.
- trajectories.jsonl  {"id", "sample", "seed", "trajectory": Trajectory.to_dict() | null, "error"} per sample.
- protocol.json       the protocol card, written when the run starts (a resume checks it still matches).
- aggregate.json      metrics (mean, avg@k, pass@k per metric), stats, n, errors and the protocol card;
                      written atomically at the end.
- config.yaml         the merged config of the run (written by `asearcher eval`).

Sealed benchmarks (xBench-DeepSearch: its publishers ask that the plaintext never be published) keep only
ids, sha256 hashes and scores: no question, answer, prediction, model text, tool argument or token id (token
ids decode back to the prompt, which contains the question) reaches any of these files.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATS_KEYS = ("turns", "searches", "accesses", "input_tokens", "output_tokens", "max_context_tokens")
JUDGE_METRIC = "judge"  # the LLM-as-judge score ("LasJ"; upstream stores it as "MBE")


@dataclass(frozen=True)
class EvalPaths:
    root: Path

    @classmethod
    def for_run(cls, results_dir: str | Path, model: str, setting: str, benchmark: str) -> EvalPaths:
        return cls(Path(results_dir) / "eval" / model / setting / benchmark)

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories.jsonl"

    @property
    def protocol(self) -> Path:
        return self.root / "protocol.json"

    @property
    def aggregate(self) -> Path:
        return self.root / "aggregate.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"


def sha256_text(value: str) -> str:
    """sha256 of a string (for sealed rows: lets two runs be compared without the plaintext)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def sample_row(
    *,
    qid: str,
    sample: int,
    seed: int,
    question: str,
    answers: list[str],
    prediction: str | None,
    scores: dict[str, float],
    judge: dict[str, Any] | None,
    stats: dict[str, Any],
    finish: str,
    status: str,
    error: str | None,
    time_s: float,
    sealed: bool,
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": qid, "sample": sample, "seed": seed}
    if sealed:
        # the same hashes as loaders.Sealed.sha256 / public_view: one per plaintext string
        row["question_sha256"] = sha256_text(question)
        row["answers_sha256"] = [sha256_text(a) for a in answers]
        row["prediction_sha256"] = sha256_text(prediction) if prediction is not None else None
        if judge is not None:  # the judge's reply may quote the answer
            judge = {k: v for k, v in judge.items() if k not in ("raw", "error")}
    else:
        row["prediction"] = prediction
        row["answers"] = list(answers)
    row.update(
        scores=scores,
        judge=judge,
        stats=stats,
        finish=finish,
        status=status,
        error=error,
        time_s=round(time_s, 3),
    )
    return row


def trajectory_dict(traj: Any) -> dict[str, Any]:
    """Same content as Trajectory.to_dict(), without dataclasses.asdict's deep copy of every token id (which
    costs more than the rest of an evaluation step). Lists are shared, not copied: serialise right away."""
    d = {f.name: getattr(traj, f.name) for f in dataclasses.fields(traj)}
    d["events"] = [
        {f.name: getattr(e, f.name) for f in dataclasses.fields(e)} if dataclasses.is_dataclass(e) else e
        for e in traj.events
    ]
    d["stats"] = traj.stats()
    return d


def redact_trajectory(d: dict[str, Any]) -> dict[str, Any]:
    """A trajectory dict with every piece of text (and every token id) removed; structure and sizes kept."""
    out = {
        k: v
        for k, v in d.items()
        if k not in ("question", "answers", "prediction", "events", "error", "meta")
    }
    out["prediction_sha256"] = sha256_text(d["prediction"]) if d.get("prediction") is not None else None
    out["error"] = None if d.get("error") is None else "(redacted)"
    events = []
    for e in d.get("events", []):
        if e.get("type") == "llm":
            events.append(
                {
                    "type": "llm",
                    "purpose": e.get("purpose"),
                    "finish_reason": e.get("finish_reason"),
                    "n_input_tokens": len(e.get("input_ids") or []),
                    "n_output_tokens": len(e.get("output_ids") or []),
                    "output_versions": sorted(set(e.get("output_versions") or [])),
                    "t_start": e.get("t_start"),
                    "t_end": e.get("t_end"),
                }
            )
        else:
            result = e.get("result")
            events.append(
                {
                    "type": e.get("type"),
                    "tool": e.get("tool"),
                    "ok": e.get("ok"),
                    "n_results": len(result) if isinstance(result, list) else None,
                    "t_start": e.get("t_start"),
                    "t_end": e.get("t_end"),
                }
            )
    out["events"] = events
    return out


# ---- aggregation ----------------------------------------------------------------------------------------


def latest_rows(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The last row per (id, sample): a retried error row is superseded by its rerun."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        out[(str(r["id"]), int(r["sample"]))] = r
    return out


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def aggregate(
    rows: Iterable[dict[str, Any]], *, k: int, metric_names: list[str], card: dict[str, Any]
) -> dict[str, Any]:
    """Aggregate per-sample rows into aggregate.json's content (independent of the order rows finished in).

    Error rows count as score 0 (they are samples the agent failed on) and are also counted under `errors`.
    Stats are averaged over samples that produced a trajectory.
    """
    from asearcher.eval.aggregate import at_k

    by_key = latest_rows(rows)
    by_q: dict[str, dict[int, dict[str, Any]]] = {}
    for (qid, s), r in by_key.items():
        by_q.setdefault(qid, {})[s] = r
    qids = sorted(by_q)
    metrics: dict[str, Any] = {}
    for m in metric_names:
        triples = [(qid, s, float(r["scores"].get(m, 0.0))) for (qid, s), r in sorted(by_key.items())]
        res = at_k(triples, k) if triples else None
        by_sample = [_mean([score for _, i, score in triples if i == s]) for s in range(k)]
        metrics[m] = {
            "mean": _mean([score for _, _, score in triples]),
            f"avg@{k}": res.avg if res else None,
            f"pass@{k}": res.pass_ if res else None,
            "by_sample": by_sample,
        }
    ok_rows = [r for r in by_key.values() if r.get("stats")]
    stats = {f"avg_{key}": _mean([float(r["stats"].get(key, 0)) for r in ok_rows]) for key in STATS_KEYS}
    n_complete = sum(1 for q in qids if len(by_q[q]) >= k)
    judge_status = Counter(r["judge"]["status"] for r in by_key.values() if r.get("judge"))
    return {
        "benchmark": card.get("benchmark", {}).get("name"),
        "n": len(qids),
        "n_complete": n_complete,
        "n_samples": len(by_key),
        "k": k,
        "errors": sum(1 for r in by_key.values() if r.get("status") == "error"),
        # failed tool calls inside trajectories (the agent saw them as observations; not sample errors)
        "tool_failures": sum(
            int(r["stats"].get("searches_failed", 0)) + int(r["stats"].get("accesses_failed", 0))
            for r in ok_rows
        ),
        "finish": dict(sorted(Counter(r.get("finish") for r in by_key.values()).items())),
        "judge_status": dict(sorted(judge_status.items())),
        "metrics": metrics,
        "stats": stats,
        "protocol": card,
    }
