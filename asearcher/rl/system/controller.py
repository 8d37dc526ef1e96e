"""The asynchronous RL loop (driver side).

One asyncio loop in the driver:
  1. admit questions while the staleness bound allows (StalenessManager), each to the least-loaded worker;
  2. collect finished groups; dynamic filtering drops all-equal-reward groups (more questions are drawn);
  3. once `batch_size` groups are ready and the trainer is free, train on them in a thread (so rollouts keep
     flowing), sorted by question draw number so the update does not depend on completion order;
  4. push the new weights to every worker (rl.weight_sync: object store, disk or an in-memory broadcast;
     interruptible on the engine side), bump the version, checkpoint every `checkpoint_every` steps, log the step.

A dead worker (RayActorError) is replaced by a fresh actor that gets the current weights; its in-flight
questions are re-run there with the same seeds. With eta = 0 the loop is synchronous RL, and because
trajectory seeds derive from (question draw number, sample index) it reproduces a plain synchronous loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ray.exceptions import RayActorError

from asearcher.rl.system.checkpoint import save_checkpoint
from asearcher.rl.system.dataset import QuestionStream
from asearcher.rl.system.metrics_log import (
    MetricsLogger,
    batch_metrics,
    peak_memory,
    rollout_metrics,
    trajectory_counts,
)
from asearcher.rl.system.rollout_log import RolloutLog
from asearcher.rl.system.staleness import StalenessManager
from asearcher.rl.algo.types import Group
from asearcher.rl.system.weight_sync import WeightSync

log = logging.getLogger(__name__)

WorkerSpawner = Callable[[int], Any]  # worker index -> Ray actor handle


@dataclass
class _Slot:
    """One worker: its actor handle and the draw numbers it is running."""

    index: int
    handle: Any
    generation: int = 0
    in_flight: set[int] = field(default_factory=set)


@dataclass
class _Task:
    q: dict[str, Any]
    submit_version: int
    worker: int
    generation: int


class Controller:
    def __init__(
        self,
        *,
        cfg: Any,  # RLConfig
        trainer: Any,
        stream: QuestionStream,
        spawn_worker: WorkerSpawner,
        output_dir: str | Path | None = None,
        metrics: MetricsLogger | None = None,
        resume_state: dict[str, Any] | None = None,
        after_step: Callable[[Controller, int], Any] | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.trainer = trainer
        self.stream = stream
        self.spawn_worker = spawn_worker
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.metrics = metrics
        self.after_step = after_step
        self.progress = progress
        B = cfg.batch_size
        self.staleness = StalenessManager(B, cfg.max_head_offpolicyness, cfg.max_concurrent_rollouts)
        self.version = int(trainer.version)
        # Trained groups count as accepted: the bound is on the cumulative number of batches' worth of groups.
        self.staleness.accepted = self.version * B
        self.counters: dict[str, float] = {
            "groups_filtered": 0,
            "groups_admitted": 0,
            "worker_restarts": 0,
            "questions_requeued": 0,
            "trainer_busy_s": 0.0,
            "trainer_wait_s": 0.0,
            "wall_s": 0.0,
        }
        if resume_state:
            for k, v in resume_state.get("counters", {}).items():
                self.counters[k] = v
            self.staleness.rejected = int(self.counters["groups_filtered"])
        self.sync = WeightSync(
            cfg.weight_sync,
            self.output_dir,
            bucket_mb=cfg.weight_sync_bucket_mb,
            timeout_s=cfg.weight_sync_timeout_s,
        )
        # set while no train_step runs: a broadcast to a replaced worker reads the trainer's live weights
        self._trainer_idle = asyncio.Event()
        self._trainer_idle.set()
        self.slots: list[_Slot] = []
        self.ready: list[Group] = []  # accepted, not yet trained (completion order)
        self.tasks: dict[asyncio.Future, _Task] = {}
        self.step_log: list[dict[str, Any]] = []
        self.admitted: list[int] = []  # draw numbers in admission order (this process)
        self.unfinished: list[int] = []  # in flight or untrained when run() returned
        self._stop = False
        self._bar: Any = None
        self._rollout_rewards: list[float] = []
        self._rollout_counts: list[dict[str, int]] = []
        # a sample of each version's trained trajectories -> OUTPUT/rollouts/ (resume drops versions >= this one)
        save = cfg.save_rollouts
        self.rollout_log = (
            RolloutLog(self.output_dir, save, start_version=self.version)
            if self.output_dir is not None and save.enabled and save.per_version > 0
            else None
        )

    # ---- workers -----------------------------------------------------------------------------------
    async def _start_workers(self) -> None:
        self.slots = [_Slot(i, self.spawn_worker(i)) for i in range(self.cfg.rollout_workers)]
        await self._push_weights(self.version)

    async def _push_weights(self, version: int) -> None:
        """Bring every worker to the trainer's weights as `version`; a worker that died on the way is replaced."""
        handles = [s.handle for s in self.slots]
        results = await self.sync.push(self.trainer, version, handles)
        for slot, handle, r in zip(self.slots, handles, results, strict=True):
            if isinstance(r, RayActorError):
                # unless replaced meanwhile (by a failed run_group); its failed run_group calls get re-queued
                if slot.handle is handle:
                    await self._restart_worker(slot)
            elif isinstance(r, BaseException):
                raise r

    async def _restart_worker(self, slot: _Slot) -> None:
        import ray

        log.warning("rollout worker %d died; restarting it with weights v%d", slot.index, self.version)
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception:
            pass
        slot.handle = self.spawn_worker(slot.index)
        slot.generation += 1
        self.counters["worker_restarts"] += 1
        if self.sync.needs_every_worker:
            # a new broadcast group: every worker joins it and gets the trainer's weights, read between steps
            await self._trainer_idle.wait()
            await self._push_weights(int(self.trainer.version))
        else:
            await self.sync.catch_up(self.trainer, slot.handle)

    def _submit(self, q: dict[str, Any], submit_version: int) -> None:
        slot = min(self.slots, key=lambda s: (len(s.in_flight), s.index))
        slot.in_flight.add(q["index"])
        fut = asyncio.ensure_future(self._await_ref(slot.handle.run_group.remote(q, submit_version)))
        self.tasks[fut] = _Task(q, submit_version, slot.index, slot.generation)

    @staticmethod
    async def _await_ref(ref: Any) -> Any:
        return await ref

    def _admit(self) -> None:
        n = self.staleness.capacity(self.version)
        for _ in range(n):
            q = self.stream.next().to_dict()
            self.staleness.on_admit(self.version)
            self.counters["groups_admitted"] += 1
            self.admitted.append(q["index"])
            self._submit(q, self.version)

    async def _handle_done(self, fut: asyncio.Future) -> None:
        task = self.tasks.pop(fut)
        slot = self.slots[task.worker]
        slot.in_flight.discard(task.q["index"])
        try:
            group: Group = fut.result()
        except RayActorError:
            if slot.generation == task.generation:
                await self._restart_worker(slot)
            # Re-run on a live worker with the same seeds; it still holds its admission slot.
            self.counters["questions_requeued"] += 1
            self._submit(task.q, self.version)
            return
        self.counters["groups_done"] = self.counters.get("groups_done", 0) + 1
        # Reward (and per-trajectory counts) of every finished trajectory, filtered groups included: the batch
        # mean alone is biased (dynamic filtering keeps only mixed groups), so this is the curve that shows the
        # policy improving.
        self._rollout_rewards.extend(group.rewards)
        self._rollout_counts.extend(trajectory_counts(s.trajectory) for s in group.samples)
        too_easy = self.cfg.curriculum_min_tool_calls is not None and not group.needs_tool_calls(
            self.cfg.curriculum_min_tool_calls
        )
        if too_easy:
            self.counters["groups_curriculum_filtered"] = (
                self.counters.get("groups_curriculum_filtered", 0) + 1
            )
        if (self.cfg.dynamic_filtering and group.all_equal()) or too_easy:
            self.staleness.on_reject()
            self.counters["groups_filtered"] += 1
        else:
            self.staleness.on_accept()
            self.ready.append(group)
        if self._bar is not None:  # rollouts between steps can take long: show that they are progressing
            last = self.step_log[-1] if self.step_log else None
            self._bar.set_postfix(
                reward=f"{last['rollout_reward_mean']:.3f}" if last else "-",
                groups=int(self.counters["groups_done"]),
                filtered=int(self.counters["groups_filtered"]),
                ready=len(self.ready),
                refresh=True,
            )

    # ---- training ----------------------------------------------------------------------------------
    def _in_flight_indices(self) -> list[int]:
        return sorted([t.q["index"] for t in self.tasks.values()] + [g.meta["index"] for g in self.ready])

    async def _train(self, batch: list[Group], wait_s: float) -> dict[str, Any]:
        train_version = self.version
        batch.sort(key=lambda g: g.meta["index"])  # completion order must not change the update
        t0 = time.perf_counter()
        self._trainer_idle.clear()
        try:
            stats = await asyncio.to_thread(self.trainer.train_step, batch)
        finally:
            self._trainer_idle.set()
        train_s = time.perf_counter() - t0
        self.counters["trainer_busy_s"] += train_s
        new_version = int(self.trainer.version)
        if new_version != train_version + 1:
            raise RuntimeError(
                f"trainer.train_step moved version {train_version} -> {new_version}, expected +1"
            )
        if self.rollout_log is not None:  # before the step's checkpoint; a redone step rewrites its file
            await asyncio.to_thread(self.rollout_log.write, train_version, batch)
        t1 = time.perf_counter()
        await self._push_weights(new_version)
        self.version = new_version
        sync_s = time.perf_counter() - t1
        row: dict[str, Any] = {"step": new_version, "version": new_version}
        row.update(batch_metrics(batch, train_version))
        row["groups_filtered_total"] = int(self.counters["groups_filtered"])
        rr, self._rollout_rewards = self._rollout_rewards, []
        rc, self._rollout_counts = self._rollout_counts, []
        row.update(rollout_metrics(rr, rc))
        row["batch_indices"] = [g.meta["index"] for g in batch]
        row["batch_qids"] = [g.qid for g in batch]
        row["submit_versions"] = [g.submit_version for g in batch]
        row.update({"wait_s": wait_s, "train_s": train_s, "sync_s": sync_s})
        row.update({f"train/{k}": float(v) for k, v in (stats or {}).items() if isinstance(v, (int, float))})
        return row

    def _checkpoint(self, step: int) -> None:
        assert self.output_dir is not None
        state = {
            "version": self.version,
            "stream": self.stream.state(in_flight=self._in_flight_indices()),
            "counters": dict(self.counters),
        }
        rows = (
            [r for r in self.metrics.rows if int(r.get("step", 0)) <= step]
            if self.metrics is not None
            else None
        )
        save_checkpoint(
            self.output_dir / "checkpoints", step, self.trainer, state, metrics_rows=rows
        )  # keeps 2

    def request_stop(self) -> None:
        """Finish the training step in progress (if any), then return from run() (e.g. from an after_step hook)."""
        self._stop = True

    # ---- main loop ---------------------------------------------------------------------------------
    async def run(self, steps: int | None = None) -> list[dict[str, Any]]:
        """Train until the trainer reaches `steps` (default cfg.steps) versions; returns the step rows."""
        target = self.cfg.steps if steps is None else steps
        B = self.cfg.batch_size
        await self._start_workers()
        wall0 = time.perf_counter() - float(self.counters["wall_s"])
        wait_start = time.perf_counter()
        train_fut: asyncio.Future | None = None
        bar = None
        if self.progress:
            from asearcher.utils.progress import progress as progress_bar

            bar = progress_bar(total=target, initial=self.version, desc="rl steps", unit="step")
            self._bar = bar
        try:
            while (self.version < target and not self._stop) or train_fut is not None:
                if self.version < target and not self._stop:
                    self._admit()  # also while training: that overlap is the point of asynchronous RL
                if train_fut is None and len(self.ready) >= B and self.version < target and not self._stop:
                    wait_s = time.perf_counter() - wait_start
                    self.counters["trainer_wait_s"] += wait_s
                    batch, self.ready = self.ready[:B], self.ready[B:]
                    train_fut = asyncio.ensure_future(self._train(batch, wait_s))
                    continue
                pending = set(self.tasks) | ({train_fut} if train_fut is not None else set())
                if not pending:
                    raise RuntimeError(
                        "RL loop stalled: nothing running and no batch ready (check rl settings)"
                    )
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    if fut is train_fut:
                        row = fut.result()
                        train_fut = None
                        self.counters["wall_s"] = time.perf_counter() - wall0
                        row["trainer_idle_frac"] = self.counters["trainer_wait_s"] / max(
                            self.counters["wall_s"], 1e-9
                        )
                        row["wall_s"] = self.counters["wall_s"]
                        row.update({k: v for k, v in self.counters.items() if k not in row})
                        row.update(self.staleness.state())
                        row.update(peak_memory())
                        step = row["step"]
                        # log first: a crash before the checkpoint only leaves rows that resume cuts and redoes
                        if self.metrics is not None:
                            self.metrics.log(row)
                        if self.output_dir is not None and (
                            step % self.cfg.checkpoint_every == 0 or step == target or self._stop
                        ):
                            self._checkpoint(step)
                        self.step_log.append(row)
                        if bar is not None:
                            bar.update(1)
                            bar.set_postfix(
                                reward=f"{row['rollout_reward_mean']:.3f}",
                                idle=f"{row['trainer_idle_frac']:.2f}",
                            )
                        if self.after_step is not None:
                            r = self.after_step(self, step)
                            if asyncio.iscoroutine(r):
                                await r
                        wait_start = time.perf_counter()
                    else:
                        await self._handle_done(fut)
        finally:
            if bar is not None:
                bar.close()
            self.unfinished = self._in_flight_indices()
            for fut in list(self.tasks):
                fut.cancel()
        return self.step_log

    async def shutdown(self) -> None:
        import ray

        for s in self.slots:
            try:
                await s.handle.aclose.remote()
            except Exception:
                pass
            ray.kill(s.handle, no_restart=True)
        self.slots = []
        self.sync.close()
