"""Asynchronous, resumable evaluation of one (model, agent setting, benchmark).

Every (question, sample) pair is one asyncio task; at most `concurrency` trajectories are in flight at once
(a FIFO semaphore), so while one trajectory waits on a search another decodes: LLM and tool calls never wait
for each other. Sample i of every question uses seeds[i] (upstream's "parallel-mode seed").

Resume: each finished pair is appended durably to samples.jsonl (JsonlAppender: flush + fsync), after its
trajectory row. On restart the finished pairs are read back and skipped. A trajectory that fails (engine or
tool error escaping the agent) becomes an error row scored 0 and counted in aggregate.json; it is never
dropped. Anything that escapes a task (a bug, Ctrl-C) stops the run: the finished pairs are on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from asearcher.utils.progress import progress as progress_bar

from asearcher.agent.base import Agent
from asearcher.errors import UserFacingError
from asearcher.llm.engine import InferenceEngine, SamplingParams
from asearcher.tools.base import ToolBackend
from asearcher.utils.atomic import atomic_path
from asearcher.utils.jsonl import JsonlAppender, iter_jsonl, write_json, write_jsonl
from asearcher.utils.secrets import redact_obj

from .judge import Judge
from .loaders import is_sealed, reveal
from .outputs import (
    JUDGE_METRIC,
    EvalPaths,
    aggregate,
    latest_rows,
    redact_trajectory,
    sample_row,
    trajectory_dict,
)
from .protocol import check_resumable

log = logging.getLogger(__name__)

MetricFn = Callable[[str | None, list[str]], float]


@dataclass
class EvalJob:
    """One evaluation: the questions, the protocol and where results go."""

    benchmark: str
    rows: list[dict[str, Any]]  # {"id", "question", "answers"}
    k: int
    seeds: list[int]  # one per sample index
    sampling: SamplingParams  # temperature / top-p / max tokens; the seed is set per sample
    metrics: dict[str, MetricFn]
    out_dir: Path
    card: dict[str, Any]  # protocol card (protocol.build_card)
    concurrency: int = 32
    sealed: bool = False  # never write question / answers / model text (xBench)
    judge: Judge | None = None
    retry_errors: bool = False  # on resume, redo pairs that finished as errors
    progress: bool = True
    #: test hook: called after each pair is written (e.g. to inject a crash after N samples)
    on_sample: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.sealed = self.sealed or any(is_sealed(r) for r in self.rows)
        if len(self.seeds) != self.k:
            raise ValueError(f"need one seed per sample: k={self.k}, got {len(self.seeds)} seeds")
        ids = [str(r["id"]) for r in self.rows]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise UserFacingError(f"benchmark {self.benchmark}: duplicate question id {dup!r}")

    @property
    def metric_names(self) -> list[str]:
        return list(self.metrics) + ([JUDGE_METRIC] if self.judge is not None else [])


class _Writer:
    """Serialises durable appends. fsync runs in a worker thread so the event loop keeps serving other
    trajectories; a write that has started always completes (it is shielded from cancellation and awaited
    before the files close), so a stopped run never leaves a trajectory row without its sample row."""

    def __init__(self, paths: EvalPaths):
        self.samples = JsonlAppender(paths.samples)  # opening cuts a torn last line from a crash
        self.trajs = JsonlAppender(paths.trajectories)
        self._lock = asyncio.Lock()
        self._tlock = threading.Lock()
        self._pending: set[asyncio.Future] = set()

    async def write(self, traj_row: dict[str, Any], sample: dict[str, Any]) -> None:
        def _do() -> None:
            with self._tlock:
                # trajectory first: the sample row is the commit record that marks the pair finished
                self.trajs.append(traj_row)
                self.samples.append(sample)

        async with self._lock:
            fut = asyncio.get_running_loop().run_in_executor(None, _do)
            self._pending.add(fut)
            fut.add_done_callback(self._pending.discard)
            await asyncio.shield(fut)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        self.samples.close()
        self.trajs.close()


class SealedLogRedactor(logging.Filter):
    """Replaces sealed plaintext (questions, answers) in every log record that reaches a root handler, including
    tracebacks: an agent or library logging an exception that quotes a sealed question leaks nothing."""

    MASK = "<sealed>"

    def __init__(self, secrets: list[str]):
        super().__init__()
        # longest first, so a question is masked whole before any answer inside it; very short strings
        # (a one-digit answer) would mask unrelated text and reveal nothing on their own
        self.secrets = sorted({t for t in secrets if len(t) >= 3}, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for t in self.secrets:
            if t in text:
                text = text.replace(t, self.MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = self._redact(msg)
        if red != msg:
            record.msg, record.args = red, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = self._redact(text), None
        elif record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True

    def __enter__(self) -> SealedLogRedactor:
        self._handlers = list(logging.getLogger().handlers)
        for h in self._handlers:
            h.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handlers:
            h.removeFilter(self)


def _load_done(
    paths: EvalPaths, job: EvalJob
) -> tuple[dict[tuple[str, int], dict[str, Any]], set[tuple[str, int]]]:
    """(finished pairs of this job to skip, every committed pair to keep on disk)."""
    if not paths.samples.exists():
        return {}, set()
    valid_ids = {str(r["id"]) for r in job.rows}
    done, keep = {}, set()
    for key, row in latest_rows(
        iter_jsonl(paths.samples, require=("id", "sample", "scores", "status"))
    ).items():
        if key[1] >= job.k:
            raise UserFacingError(
                f"{paths.samples}: sample index {key[1]} >= k={job.k}; use another --output"
            )
        if key[0] not in valid_ids:
            keep.add(key)  # a question beyond the current --max-samples: kept on disk, not aggregated
            continue
        if job.retry_errors and row.get("status") == "error":
            continue  # redone now; its old rows are superseded
        done[key] = row
        keep.add(key)
    return done, keep


def _compact_trajectories(
    path: Path, commits: dict[tuple[str, int], int], sort_key: Callable[[tuple[str, int]], Any] | None = None
) -> None:
    """Keep, per (id, sample), the trajectory row that the last committed sample row of that pair belongs to;
    with `sort_key`, also write the rows in that order (rows are copied by byte offset: memory stays small).

    A pair's trajectory row is always appended just before its sample row, so the c-th trajectory row of a pair
    belongs to its c-th sample row. Rows without a commit (a crash between the two appends) and rows of pairs
    that will be redone (`commits` lacks them) are dropped.
    """
    if not path.exists():
        return
    JsonlAppender(path).close()  # cut a torn last line left by a crash
    seen: dict[tuple[str, int], int] = {}
    keep: dict[tuple[str, int], tuple[int, int]] = {}  # pair -> (offset, length) of the row to keep
    total, offset = 0, 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            total += 1
            try:
                r = json.loads(raw)
                key = (str(r["id"]), int(r["sample"]))
            except (ValueError, KeyError, TypeError) as e:
                raise UserFacingError(
                    f"{path}:{lineno}: not a trajectory row ({e}); delete the file to redo"
                ) from None
            seen[key] = seen.get(key, 0) + 1
            if key in commits and seen[key] <= commits[key]:
                keep[key] = (start, len(raw))  # the c-th row if it exists, else the latest before it
    keys = list(keep)
    if sort_key is not None:
        keys.sort(key=sort_key)
    elif len(keep) == total:
        return
    with atomic_path(path) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        for key in keys:
            start, length = keep[key]
            src.seek(start)
            dst.write(src.read(length))
        dst.flush()
        os.fsync(dst.fileno())
    if total != len(keep):
        log.info("%s: dropped %d trajectory rows of unfinished or redone samples", path, total - len(keep))


def _commit_counts(path: Path, keep: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    if path.exists():
        for r in iter_jsonl(path, require=("id", "sample")):
            key = (str(r["id"]), int(r["sample"]))
            if key in keep:
                counts[key] = counts.get(key, 0) + 1
    return counts


async def _one(
    job: EvalJob,
    row: dict[str, Any],
    s: int,
    agent: Agent,
    engine: InferenceEngine,
    tools: ToolBackend,
    sem: asyncio.Semaphore,
) -> tuple[dict[str, Any], dict[str, Any]]:
    # sealed (xBench) values are revealed only here, in memory, for the prompt and the scoring
    qid, question, answers = str(row["id"]), reveal(row["question"]), [reveal(a) for a in row["answers"]]
    seed = job.seeds[s]
    sampling = replace(job.sampling, seed=seed)
    rng = random.Random(f"{seed}:{qid}")  # str seeds are hashed deterministically (sha512)
    t0 = time.perf_counter()
    traj = None
    error = None
    async with sem:
        try:
            traj = await agent.run(
                qid=qid,
                question=question,
                answers=answers,
                engine=engine,
                tools=tools,
                sampling=sampling,
                sample_idx=s,
                rng=rng,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # engine/tool failure that escaped the agent: an error row, not a crash
            # a sealed question could appear in an exception message: keep only the type there
            error = type(e).__name__ if job.sealed else f"{type(e).__name__}: {e}"
            log.warning("%s %s#%d failed: %s", job.benchmark, qid, s, error)
    elapsed = time.perf_counter() - t0
    prediction = traj.prediction if traj is not None else None
    if traj is not None and traj.finish == "error":
        error = error or ("(agent error)" if job.sealed else (traj.error or "agent error"))
    status = "error" if error else "ok"
    # an error row scores 0 on every metric (em/cem would score a missing answer as "", as upstream does)
    scores = {name: 0.0 if error else float(fn(prediction, answers)) for name, fn in job.metrics.items()}
    judge = None
    if job.judge is not None:
        if traj is None:
            scores[JUDGE_METRIC] = 0.0
        else:
            jr = await job.judge.judge(question, answers, prediction, seed=seed)
            judge = jr.to_dict()
            scores[JUDGE_METRIC] = jr.score
    srow = sample_row(
        qid=qid,
        sample=s,
        seed=seed,
        question=question,
        answers=answers,
        prediction=prediction,
        scores=scores,
        judge=judge,
        stats=traj.stats() if traj is not None else {},
        finish=traj.finish if traj is not None else "error",
        status=status,
        error=error,
        time_s=elapsed,
        sealed=job.sealed,
    )
    tdict = None
    if traj is not None:
        tdict = trajectory_dict(traj)
        if job.sealed:
            tdict = redact_trajectory(tdict)
    trow = {"id": qid, "sample": s, "seed": seed, "trajectory": tdict, "error": error}
    # the boundary: error texts, judge replies and model text may quote a response body that echoed a key
    return redact_obj(trow), redact_obj(srow)


async def run_eval(
    job: EvalJob, *, agent: Agent, engine: InferenceEngine, tools: ToolBackend
) -> dict[str, Any]:
    """Run (or resume) the job; return the aggregate that was written to aggregate.json."""
    if not job.sealed:
        return await _run_eval(job, agent=agent, engine=engine, tools=tools)
    secrets = [reveal(r["question"]) for r in job.rows] + [reveal(a) for r in job.rows for a in r["answers"]]
    with SealedLogRedactor(secrets):
        return await _run_eval(job, agent=agent, engine=engine, tools=tools)


async def _run_eval(
    job: EvalJob, *, agent: Agent, engine: InferenceEngine, tools: ToolBackend
) -> dict[str, Any]:
    paths = EvalPaths(Path(job.out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    card = redact_obj(job.card)  # as written (and compared on resume): e.g. a base_url may hold a key
    if paths.protocol.exists():
        saved = json.loads(paths.protocol.read_text(encoding="utf-8"))
        check_resumable(saved, card, str(paths.root))
    write_json(paths.protocol, card)

    JsonlAppender(paths.samples).close()  # cut a torn last line left by a crash before reading
    done, keep = _load_done(paths, job)
    _compact_trajectories(paths.trajectories, _commit_counts(paths.samples, keep))
    todo = [(row, s) for row in job.rows for s in range(job.k) if (str(row["id"]), s) not in done]
    total = len(job.rows) * job.k
    if done:
        log.info("%s: resuming, %d of %d samples already done", job.benchmark, total - len(todo), total)

    writer = _Writer(paths)
    try:
        sem = asyncio.Semaphore(job.concurrency)
        bar = progress_bar(
            total=total, initial=total - len(todo), desc=f"eval {job.benchmark}", disable=not job.progress
        )
        n_err = sum(1 for r in done.values() if r.get("status") == "error")

        async def task(row: dict[str, Any], s: int) -> None:
            nonlocal n_err
            trow, srow = await _one(job, row, s, agent, engine, tools, sem)
            await writer.write(trow, srow)
            n_err += srow["status"] == "error"
            bar.update(1)
            if n_err:
                bar.set_postfix(errors=n_err, refresh=False)
            if job.on_sample is not None:
                job.on_sample(srow)

        tasks = [asyncio.create_task(task(row, s)) for row, s in todo]
        try:
            if tasks:
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = [t for t in finished if not t.cancelled() and t.exception() is not None]
                if failed:
                    raise failed[0].exception()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
    finally:
        await writer.aclose()

    # complete: rewrite samples.jsonl sorted and de-duplicated, then the aggregate (both atomic)
    order = {str(r["id"]): i for i, r in enumerate(job.rows)}
    rows = latest_rows(iter_jsonl(paths.samples))
    final = sorted(
        (r for key, r in rows.items() if key[0] in order), key=lambda r: (order[str(r["id"])], r["sample"])
    )
    extra = [r for key, r in sorted(rows.items()) if key[0] not in order]  # beyond --max-samples: kept
    keep = {(str(r["id"]), int(r["sample"])) for r in final + extra}
    n_order = len(order)
    _compact_trajectories(
        paths.trajectories,
        _commit_counts(paths.samples, keep),
        sort_key=lambda key: (order.get(key[0], n_order), key[0], key[1]),
    )
    write_jsonl(paths.samples, redact_obj(final + extra))
    result = aggregate(final, k=job.k, metric_names=job.metric_names, card=card)
    write_json(paths.aggregate, redact_obj(result))
    return result
