"""Weights in memory from a trainer to inference engines: bucketed broadcasts over a process group of their own.

Rank 0 is the trainer process that holds the weights (the torch trainer's process, or DeepSpeed rank 0), ranks
1..n are the engines' receivers (one per transformers engine, one per tensor-parallel worker of a vLLM engine).
The group is built from a TCPStore that the RL driver hosts (asearcher.rl.system.weight_sync), with torch's
ProcessGroupGloo (CPU) or ProcessGroupNCCL (GPUs) constructed directly: torch.distributed's default group is never
touched (the DeepSpeed trainer owns it, vLLM's workers have their own), and both ends run the same code.

One version travels as:
  1. metadata, once, through Ray: a `BucketLayout` (every tensor's name, shape and wire dtype, and how the tensors
     are packed into flat per-dtype buckets of at most `bucket_bytes`), inside a `BroadcastUpdate`;
  2. the buckets, broadcast from rank 0 in layout order; a bucket is sent as soon as its last tensor is packed, so
     a trainer that gathers its parameters piece by piece (ZeRO-3) never holds more than a few buckets;
  3. on each receiver, the buckets unpacked into views (name -> tensor of its shape), no further copy.

The pieces here (layout, packing, the group cache, send and receive loops) are shared by the transformers engine,
the vLLM worker extension, the trainers and the benchmark; they import only torch.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch

DEFAULT_BUCKET_MB = 256


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown tensor dtype {name!r}")
    return dtype


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name, e.g. "bfloat16": the dtype on the wire (and in the bucket)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Bucket:
    dtype: str
    numel: int
    items: tuple[tuple[int, int], ...]  # (index into BucketLayout.tensors, element offset in the bucket)


@dataclass(frozen=True)
class BucketLayout:
    """Tensors in send order, and the buckets they are packed into (in the order they are broadcast)."""

    tensors: tuple[TensorMeta, ...]
    buckets: tuple[Bucket, ...]

    @property
    def nbytes(self) -> int:
        return sum(b.numel * to_dtype(b.dtype).itemsize for b in self.buckets)

    def names(self) -> list[str]:
        return [m.name for m in self.tensors]


def metas_of(named: Iterable[tuple[str, torch.Tensor]]) -> list[TensorMeta]:
    return [TensorMeta(n, tuple(t.shape), dtype_name(t.dtype)) for n, t in named]


def with_wire_dtype(metas: Iterable[TensorMeta], dtype: str | None) -> list[TensorMeta]:
    """Floating-point tensors travel as `dtype` (the receivers' dtype: no point sending fp32 to a bf16 engine)."""
    if dtype is None:
        return list(metas)
    return [replace(m, dtype=dtype) if to_dtype(m.dtype).is_floating_point else m for m in metas]


def plan_buckets(metas: Iterable[TensorMeta], bucket_bytes: int) -> BucketLayout:
    """Pack tensors, in their order, into per-dtype buckets of at most `bucket_bytes` (a bigger tensor gets a bucket
    of its own). Buckets are ordered by their last tensor: the sender broadcasts each one once it is complete."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes} bytes")
    metas = tuple(metas)
    names = [m.name for m in metas]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate tensor names in a weight update: {dup[:3]}")
    closed: list[tuple[int, Bucket]] = []  # (index of the last tensor, bucket)
    open_: dict[str, tuple[list[tuple[int, int]], int]] = {}  # dtype -> (items, numel)

    def close(dtype: str) -> None:
        items, numel = open_.pop(dtype)
        closed.append((items[-1][0], Bucket(dtype, numel, tuple(items))))

    for i, m in enumerate(metas):
        size = to_dtype(m.dtype).itemsize
        items, numel = open_.get(m.dtype, ([], 0))
        if items and (numel + m.numel) * size > bucket_bytes:
            close(m.dtype)
            items, numel = [], 0
        items.append((i, numel))
        open_[m.dtype] = (items, numel + m.numel)
    for dtype in list(open_):
        close(dtype)
    closed.sort(key=lambda x: x[0])
    return BucketLayout(metas, tuple(b for _, b in closed))


def unpack(layout: BucketLayout, bucket: Bucket, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Views of `flat` (one received bucket), one per tensor, in its shape."""
    out = []
    for i, off in bucket.items:
        m = layout.tensors[i]
        out.append((m.name, flat[off : off + m.numel].view(m.shape)))
    return out


# ---- the process group --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupSpec:
    """Where and how to join a weight group: the driver's TCPStore, the group's size and backend. `generation`
    changes whenever the members change (a rollout worker was replaced): every rank then joins afresh."""

    name: str
    generation: int
    host: str
    port: int
    world_size: int
    backend: str  # "gloo" | "nccl"
    timeout_s: float = 600.0

    @property
    def device(self) -> str:
        """Where buckets live: NCCL moves GPU memory, gloo CPU memory."""
        return "cuda" if self.backend == "nccl" else "cpu"


@dataclass(frozen=True)
class BroadcastUpdate:
    """What a receiver gets through Ray for one version: the group to (re)join, its rank, the layout."""

    group: GroupSpec
    rank: int  # the receiver's first rank; a tensor-parallel engine's workers take rank .. rank + tp - 1
    layout: BucketLayout
    version: int


def update_to_dict(update: BroadcastUpdate) -> dict[str, Any]:
    """Plain data (str, int, float, lists) for RPC layers that do not pickle, e.g. vLLM's collective_rpc."""
    layout = update.layout
    return {
        "group": vars(update.group).copy(),
        "rank": update.rank,
        "version": update.version,
        "tensors": [[m.name, list(m.shape), m.dtype] for m in layout.tensors],
        "buckets": [[b.dtype, b.numel, [list(it) for it in b.items]] for b in layout.buckets],
    }


def update_from_dict(d: dict[str, Any]) -> BroadcastUpdate:
    layout = BucketLayout(
        tuple(TensorMeta(n, tuple(shape), dtype) for n, shape, dtype in d["tensors"]),
        tuple(
            Bucket(dtype, int(numel), tuple((int(i), int(o)) for i, o in items))
            for dtype, numel, items in d["buckets"]
        ),
    )
    return BroadcastUpdate(GroupSpec(**d["group"]), int(d["rank"]), layout, int(d["version"]))


_GROUPS: dict[tuple[str, int], tuple[int, Any]] = {}  # (group name, rank) -> (generation, process group)
_GROUPS_LOCK = threading.Lock()


def join_group(spec: GroupSpec, rank: int) -> Any:
    """This process's member `rank` of the group (cached per name and rank; a new generation replaces the old
    group). Building one blocks until every rank has joined, or fails after spec.timeout_s."""
    key = (spec.name, rank)
    with _GROUPS_LOCK:
        hit = _GROUPS.get(key)
        if hit is not None and hit[0] == spec.generation:
            return hit[1]
    pg = _new_group(spec, rank)  # outside the lock: other members in this process join at the same time
    with _GROUPS_LOCK:
        _GROUPS[key] = (spec.generation, pg)
    return pg


def leave_groups(name: str) -> None:
    """Drop this process's members of group `name` (their sockets close with them)."""
    with _GROUPS_LOCK:
        for key in [k for k in _GROUPS if k[0] == name]:
            del _GROUPS[key]


def _new_group(spec: GroupSpec, rank: int) -> Any:
    from torch.distributed import PrefixStore, TCPStore

    if not 0 <= rank < spec.world_size:
        raise ValueError(f"rank {rank} outside the weight group of {spec.world_size}")
    timeout = timedelta(seconds=spec.timeout_s)
    client = TCPStore(spec.host, spec.port, is_master=False, timeout=timeout, wait_for_workers=False)
    store = PrefixStore(f"{spec.name}/{spec.generation}", client)
    if spec.backend == "gloo":
        from torch.distributed import ProcessGroupGloo

        return ProcessGroupGloo(store, rank, spec.world_size, timeout)
    if spec.backend == "nccl":
        from torch.distributed import ProcessGroupNCCL

        opts = ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return ProcessGroupNCCL(store, rank, spec.world_size, opts)
    raise ValueError(f"unknown weight broadcast backend {spec.backend!r} (gloo | nccl)")


def _broadcast(pg: Any, tensor: torch.Tensor) -> Any:
    from torch.distributed import BroadcastOptions

    opts = BroadcastOptions()
    opts.rootRank = 0
    opts.rootTensor = 0
    return pg.broadcast([tensor], opts)


# ---- send and receive ---------------------------------------------------------------------------------------------
def send_buckets(
    pg: Any | None, layout: BucketLayout, named: Iterable[tuple[str, torch.Tensor]], device: str
) -> int:
    """Rank 0: pack the tensors (in layout order, cast to the wire dtype) and broadcast each bucket once complete.
    The next bucket is packed while the previous one is on the wire. `pg` None consumes `named` without sending
    (ZeRO ranks other than 0 take part in the gathers only). Returns the bytes sent."""
    where = {i: (b, off) for b, bucket in enumerate(layout.buckets) for i, off in bucket.items}
    last = {bucket.items[-1][0]: b for b, bucket in enumerate(layout.buckets)}
    buffers: dict[int, torch.Tensor] = {}
    pending: Any = None
    sent = count = 0
    for i, (name, t) in enumerate(named):
        if i >= len(layout.tensors):
            raise ValueError(f"weight update: {name} is past the {len(layout.tensors)} tensors of the layout")
        m = layout.tensors[i]
        if name != m.name or tuple(t.shape) != m.shape:
            raise ValueError(
                f"weight update: tensor {i} is {name} {tuple(t.shape)}, the layout has {m.name} {m.shape}"
            )
        count += 1
        if pg is None:
            continue
        b, off = where[i]
        bucket = layout.buckets[b]
        if b not in buffers:
            buffers[b] = torch.empty(bucket.numel, dtype=to_dtype(bucket.dtype), device=device)
        buffers[b][off : off + m.numel].copy_(t.detach().reshape(-1))
        if i in last:
            if pending is not None:
                pending.wait()
            flat = buffers.pop(last[i])
            pending = _broadcast(pg, flat)
            sent += flat.numel() * flat.element_size()
    if count != len(layout.tensors):
        raise ValueError(f"weight update: got {count} tensors, the layout has {len(layout.tensors)}")
    if pending is not None:
        pending.wait()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return sent


def receive_buckets(pg: Any, layout: BucketLayout, device: str) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Ranks 1..n: yield each bucket's tensors (views) as it arrives; the next bucket is already being received
    while the caller loads the current one."""

    def post(b: int) -> tuple[torch.Tensor, Any]:
        bucket = layout.buckets[b]
        flat = torch.empty(bucket.numel, dtype=to_dtype(bucket.dtype), device=device)
        return flat, _broadcast(pg, flat)

    n = len(layout.buckets)
    nxt = post(0) if n else None
    for b in range(n):
        flat, work = nxt  # type: ignore[misc]
        work.wait()
        nxt = post(b + 1) if b + 1 < n else None
        yield unpack(layout, layout.buckets[b], flat)


def receive_state_dict(update: BroadcastUpdate, device: str | None = None) -> dict[str, torch.Tensor]:
    """Join the update's group as its rank and receive the whole version (views into the received buckets)."""
    device = device or update.group.device
    pg = join_group(update.group, update.rank)
    out: dict[str, torch.Tensor] = {}
    for part in receive_buckets(pg, update.layout, device):
        out.update(part)
    return out


def send_weights(spec: GroupSpec, layout: BucketLayout, named: Iterable[tuple[str, torch.Tensor]]) -> int:
    """Rank 0: join the group and broadcast one version; returns the bytes sent."""
    pg = join_group(spec, 0)
    return send_buckets(pg, layout, named, spec.device)


def digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, by name: equal digests, bit-identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(named, key=lambda kv: kv[0]):
        h.update(f"{k}:{dtype_name(v.dtype)}:{tuple(v.shape)}".encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def unique_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Skip tensors that share storage with an earlier one (tied embeddings: lm_head.weight is embed_tokens.weight);
    the engines re-tie them on load."""
    seen: set[tuple[int, int]] = set()
    for name, t in named:
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        yield name, t
