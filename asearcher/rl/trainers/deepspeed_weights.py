"""The weights side of a DeepSpeed rank (mixed into deepspeed_backend.DeepSpeedWorker): full state dicts and HF
exports gathered from the ZeRO partitions, and the in-memory broadcast to the engines (rl.weight_sync: broadcast),
for which every rank gathers about one bucket's worth of parameters at a time and rank 0 sends each bucket to the
engines' weight group (asearcher.llm.weight_broadcast), so no rank ever holds the whole model at once. Exports
(save_hf, and save_hf without tokenizer for disk weight updates) are in the source model's dtype.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

from asearcher.llm.weight_broadcast import (
    BucketLayout,
    GroupSpec,
    TensorMeta,
    dtype_name,
    join_group,
    send_buckets,
    to_dtype,
)
from asearcher.rl.trainers.base import source_dtype
from asearcher.utils.atomic import atomic_dir

log = logging.getLogger(__name__)


class DeepSpeedRankWeights:
    """Needs the rank's `engine` (DeepSpeed), `cfg` (RLConfig), `rank` and `model_path`."""

    engine: Any
    cfg: Any
    rank: int
    model_path: str

    def state_dict(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor] | None:
        """Full weights (CPU, in `dtype`) on rank 0; None elsewhere. Collective under ZeRO-3."""
        import deepspeed

        model = self.engine.module
        gathered = (
            deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
            if self.cfg.zero_stage == 3
            else contextlib.nullcontext()
        )
        with gathered:
            if self.rank != 0:
                return None
            return {k: v.detach().to(dtype).cpu().clone() for k, v in model.state_dict().items()}

    def save_hf(self, path: str, tokenizer: bool = True) -> bool:
        """The model in its source dtype (+ its tokenizer unless `tokenizer` is False: a weight update)."""
        dtype = source_dtype(self.model_path)
        sd = self.state_dict(dtype)
        if self.rank == 0:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            with atomic_dir(path) as tmp:
                model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype)
                model.load_state_dict(sd)
                model.save_pretrained(tmp)
                try:
                    if tokenizer:
                        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
                except Exception as e:  # a weights-only source dir
                    log.warning("no tokenizer saved with %s: %s", path, e)
        return True

    # ---- in-memory broadcast to the engines (rl.weight_sync: broadcast) -------------------------------------
    def _named_weights(self, bucket_bytes: int) -> Iterator[tuple[str, torch.Tensor]]:
        """Every parameter, full (ZeRO-3: gathered a bucket's worth at a time on every rank: collective)."""
        import deepspeed

        named = list(self.engine.module.named_parameters())
        if self.cfg.zero_stage != 3:
            yield from ((n, p.data) for n, p in named)
            return
        chunk: list[tuple[str, torch.nn.Parameter]] = []
        size = 0
        for i, (n, p) in enumerate(named):
            chunk.append((n, p))
            size += p.ds_numel * p.element_size()
            if size >= bucket_bytes or i == len(named) - 1:
                with deepspeed.zero.GatheredParameters([q for _, q in chunk], modifier_rank=None):
                    yield from ((m, q.data) for m, q in chunk)
                chunk, size = [], 0

    def weight_metas(self) -> list[TensorMeta]:
        return [
            TensorMeta(n, tuple(getattr(p, "ds_shape", p.shape)), dtype_name(p.dtype))
            for n, p in self.engine.module.named_parameters()
        ]

    def send_weights(self, group: GroupSpec, layout: BucketLayout) -> int:
        """Every rank gathers; rank 0 joins the weight group as its rank 0 and broadcasts the buckets."""
        # gather about one bucket's worth of parameters at a time
        bucket_bytes = max((b.numel * to_dtype(b.dtype).itemsize for b in layout.buckets), default=1)
        pg = join_group(group, 0) if self.rank == 0 else None
        return send_buckets(pg, layout, self._named_weights(bucket_bytes), group.device)
