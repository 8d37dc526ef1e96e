"""Pushing trainer weights to rollout workers, with a version counter on both sides (`rl.weight_sync`).

- object_store (CPU default): the state dict is `ray.put` once, as raw bytes (`StoredWeights`); every worker maps
  the same object without copying it (a pickled torch tensor would be copied twice in every worker).
- disk (what upstream ASearcher uses): the trainer writes the weights in the model's dtype (`save_weights`) under
  `<output>/weight_updates/v<version>` and workers load that path; older update dirs are deleted.
- broadcast: in memory, over a process group of its own between the trainer (rank 0) and every engine (ranks
  1..n): NCCL when the trainer and all engines are on GPUs, gloo otherwise (asearcher.llm.weight_broadcast). This
  driver hosts the group's TCPStore; per version the bucket layout goes to the workers through Ray (with the
  group to join) while the trainer broadcasts the buckets. The group is formed at the first push and again after
  a worker is replaced (a new generation, which every member joins).
- nccl: broadcast forced onto NCCL (an error without CUDA, instead of falling back to gloo).

Workers apply updates interruptibly: in-flight generation continues under the new weights and every token
records the version that produced it (see asearcher/llm/engine.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray.exceptions import RayActorError

from asearcher.errors import UserFacingError
from asearcher.llm.weight_broadcast import (
    DEFAULT_BUCKET_MB,
    BroadcastUpdate,
    BucketLayout,
    GroupSpec,
    TensorMeta,
    leave_groups,
    metas_of,
    plan_buckets,
    to_dtype,
    with_wire_dtype,
)
from asearcher.utils.atomic import atomic_dir

log = logging.getLogger(__name__)

MODES = ("object_store", "disk", "broadcast", "nccl")
BROADCAST_MODES = ("broadcast", "nccl")


@dataclass
class StoredWeights:
    """A state dict as raw bytes for the object store: Ray keeps numpy arrays once per node and hands every worker
    a view of them, where torch tensors would be unpickled into fresh copies in each worker."""

    arrays: dict[str, np.ndarray]  # name -> the tensor's bytes (uint8)
    metas: list[TensorMeta]  # name, shape and dtype of each, as in a broadcast's layout

    @classmethod
    def of(cls, named: Any) -> StoredWeights:
        cpu = [(k, v.detach().to("cpu").contiguous()) for k, v in named]
        return cls({k: t.reshape(-1).view(torch.uint8).numpy() for k, t in cpu}, metas_of(cpu))

    def tensors(self) -> dict[str, torch.Tensor]:
        """Read-only views of the stored bytes as tensors (engines copy them into their own weights)."""
        with warnings.catch_warnings():  # the object store's buffers are read-only: they are only read here
            warnings.simplefilter("ignore", UserWarning)
            return {
                m.name: torch.from_numpy(self.arrays[m.name]).view(to_dtype(m.dtype)).reshape(m.shape)
                for m in self.metas
            }


def choose_backend(mode: str, trainer_device: str, receivers: list[dict[str, Any]]) -> str:
    """NCCL when the trainer's weights and every engine are on GPUs, else gloo; mode 'nccl' insists on NCCL."""
    on_gpus = trainer_device == "cuda" and all(r["device"] == "cuda" for r in receivers)
    if mode == "nccl" and not on_gpus:
        raise UserFacingError(
            "rl.weight_sync=nccl needs the trainer and every rollout engine on GPUs (trainer weights on "
            f"{trainer_device}, engines on {sorted({r['device'] for r in receivers})}); use rl.weight_sync=broadcast, "
            "which falls back to gloo"
        )
    return "nccl" if on_gpus else "gloo"


def wire_dtype(receivers: list[dict[str, Any]]) -> str | None:
    """The engines' common dtype (floating tensors travel in it), or None when they differ (send as is)."""
    dtypes = {r["dtype"] for r in receivers}
    return dtypes.pop() if len(dtypes) == 1 else None


class WeightSync:
    def __init__(
        self,
        mode: str,
        output_dir: str | Path | None = None,
        *,
        bucket_mb: float = DEFAULT_BUCKET_MB,
        timeout_s: float = 600.0,
    ):
        if mode == "nccl" and not torch.cuda.is_available():
            raise NotImplementedError(
                "rl.weight_sync=nccl broadcasts over NCCL between GPUs and this machine has no CUDA: use "
                "'broadcast' (gloo on the CPU, NCCL between GPUs), 'object_store' or 'disk'"
            )
        if mode not in MODES:
            raise ValueError(f"unknown weight_sync mode {mode!r} ({' | '.join(MODES)})")
        if mode == "disk" and output_dir is None:
            raise ValueError("weight_sync=disk needs an output directory")
        self.mode = mode
        self.dir = Path(output_dir) / "weight_updates" if output_dir is not None else None
        self._current: Any = None  # the payload workers get: an ObjectRef (of StoredWeights) or a path
        self.version = -1
        self._prev_path: Path | None = None
        # broadcast state
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.timeout_s = float(timeout_s)
        self._name = f"asearcher-weights-{uuid.uuid4().hex[:12]}"
        self._store: Any = None  # the TCPStore every member of the group connects to (hosted here)
        self._host = "127.0.0.1"
        self._generation = 0
        self._spec: GroupSpec | None = None
        # the handles the current group was formed with (held, so that a new handle is never mistaken for one)
        self._members: list[Any] = []
        self._ranks: list[int] = []  # each member's first rank
        self._layout: BucketLayout | None = None
        self._lock: asyncio.Lock | None = None
        self.last_bytes = 0  # bytes the trainer sent for the latest broadcast

    @property
    def needs_every_worker(self) -> bool:
        """A replaced worker changes the broadcast group: every worker then joins afresh and gets the weights."""
        return self.mode in BROADCAST_MODES

    # ---- object store / disk ----------------------------------------------------------------------------------
    def publish(self, trainer: Any, version: int) -> Any:
        """Make `trainer`'s weights available as `version` (object_store, disk); returns what to pass to
        worker.update_weights."""
        if self.mode == "object_store":
            # iter_weights: the live tensors, no copy of the model before ray.put's own (plug-ins: get_weights)
            named = (
                trainer.iter_weights() if hasattr(trainer, "iter_weights") else trainer.get_weights().items()
            )
            self._current = ray.put(StoredWeights.of(named))
        elif self.mode == "disk":
            assert self.dir is not None
            path = self.dir / f"v{version}"
            save = getattr(trainer, "save_weights", None) or trainer.save_hf  # plug-in trainers: save_hf
            with atomic_dir(path) as tmp:
                save(str(tmp))
            if self._prev_path is not None and self._prev_path != path:
                shutil.rmtree(self._prev_path, ignore_errors=True)
            self._prev_path = path
            self._current = str(path)
        else:
            raise ValueError(f"weight_sync={self.mode} pushes with push(); it publishes nothing to fetch")
        self.version = version
        return self._current

    @property
    def current(self) -> Any:
        """The latest published payload (for a restarted worker), or None before the first publish."""
        return self._current

    # ---- every mode ---------------------------------------------------------------------------------------------
    async def push(self, trainer: Any, version: int, handles: list[Any]) -> list[Any]:
        """Bring every worker (Ray handle) to `trainer`'s weights as `version`. Returns one result per handle: the
        worker's answer, or the exception its call raised (RayActorError: it died); other failures raise."""
        if self.mode not in BROADCAST_MODES:
            payload = self.publish(trainer, version)
            return await asyncio.gather(
                *(h.update_weights.remote(payload, version) for h in handles), return_exceptions=True
            )
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one broadcast at a time on the group
            return await self._broadcast(trainer, version, handles)

    async def catch_up(self, trainer: Any, handle: Any) -> Any:
        """Give a replacement worker the latest published weights (object_store, disk)."""
        return await handle.update_weights.remote(self._current, self.version)

    def close(self) -> None:
        leave_groups(self._name)  # this process's members (the torch trainer's rank 0)
        self._store = None
        self._spec = None
        self._members = []

    # ---- broadcast ----------------------------------------------------------------------------------------------
    async def _form_group(self, trainer: Any, handles: list[Any]) -> list[Any] | None:
        """A new generation of the group for these workers; returns their results instead when some are dead."""
        infos = await asyncio.gather(*(h.weight_receiver.remote() for h in handles), return_exceptions=True)
        if any(isinstance(i, RayActorError) for i in infos):
            return [i if isinstance(i, RayActorError) else None for i in infos]
        for i in infos:
            if isinstance(i, BaseException):
                raise i
        if any(i is None for i in infos):
            raise UserFacingError(
                f"rl.weight_sync={self.mode}: the rollout engine cannot receive a weight broadcast (engine.kind "
                "openai serves weights elsewhere); use rl.weight_sync=object_store or disk"
            )
        missing = [m for m in ("weight_device", "weight_metas", "send_weights") if not hasattr(trainer, m)]
        if missing:
            raise UserFacingError(
                f"rl.weight_sync={self.mode}: the trainer ({type(trainer).__name__}) lacks {', '.join(missing)}; a "
                "plug-in trainer gets them by subclassing asearcher.rl.trainers.base.Trainer"
            )
        backend = choose_backend(self.mode, trainer.weight_device(), infos)
        if self._store is None:
            from torch.distributed import TCPStore

            if ray.is_initialized():
                self._host = ray.util.get_node_ip_address()
            self._store = TCPStore(self._host, 0, is_master=True, wait_for_workers=False)
        self._ranks, rank = [], 1
        for i in infos:
            self._ranks.append(rank)
            rank += int(i["ranks"])
        self._generation += 1
        self._spec = GroupSpec(
            self._name, self._generation, self._host, self._store.port, rank, backend, self.timeout_s
        )
        self._members = list(handles)
        metas = with_wire_dtype(trainer.weight_metas(), wire_dtype(infos))
        self._layout = plan_buckets(metas, self.bucket_bytes)
        log.info(
            "weight broadcast group %s/%d: %d ranks over %s, %d buckets, %.1f MB per version",
            self._name, self._generation, rank, backend, len(self._layout.buckets), self._layout.nbytes / 2**20,
        )  # fmt: skip
        return None

    async def _broadcast(self, trainer: Any, version: int, handles: list[Any]) -> list[Any]:
        same = len(handles) == len(self._members) and all(
            a is b for a, b in zip(handles, self._members, strict=True)
        )
        if self._spec is None or not same:
            dead = await self._form_group(trainer, handles)
            if dead is not None:
                return dead
        spec, layout = self._spec, self._layout
        assert spec is not None and layout is not None
        refs = [
            h.update_weights.remote(BroadcastUpdate(spec, rank, layout, version), version)
            for h, rank in zip(handles, self._ranks, strict=True)
        ]
        send = asyncio.ensure_future(asyncio.to_thread(trainer.send_weights, spec, layout))
        send.add_done_callback(lambda f: f.cancelled() or f.exception())  # read below, or abandoned
        receives = [asyncio.ensure_future(_await(r)) for r in refs]
        pending: set[asyncio.Future] = {send, *receives}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(not f.cancelled() and f.exception() is not None for f in done):
                # a member failed or died: the others would wait for buckets (or members) that never come
                for r in refs:
                    ray.cancel(r)
                break
        results = await asyncio.gather(*receives, return_exceptions=True)
        if any(isinstance(r, RayActorError) for r in results):
            # the group lost a member; the sender fails or times out on its own; the next push forms a new group
            self._spec = None
            return [r if isinstance(r, RayActorError) else None for r in results]
        if send.done() and not send.cancelled() and send.exception() is not None:
            self._spec = None
            raise send.exception()  # type: ignore[misc]
        for r in results:
            if isinstance(r, BaseException):
                self._spec = None
                raise r
        self.last_bytes = await send
        self.version = version
        return results


async def _await(ref: Any) -> Any:
    return await ref
