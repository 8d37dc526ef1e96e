"""E5-style dense retrieval: mean-pooled, L2-normalised embeddings in a FAISS flat inner-product index.

Follows the paper's retriever recipe (E5-base-v2): "passage: " / "query: " prefixes, max_length 256, mean
pooling over the attention mask, L2 norm, exact IndexFlatIP search. The encoder is any Hugging Face encoder
(hub id or local directory); tests use a tiny randomly initialised one built locally.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asearcher.config import DenseConfig
from asearcher.errors import UserFacingError
from asearcher.utils.atomic import atomic_path

log = logging.getLogger(__name__)

EMB_SHARD_ROWS = 100_000  # embeddings are saved per shard so a crashed build resumes at the last shard


class E5Encoder:
    """Encode text with mean pooling + L2 normalisation (the E5 convention)."""

    def __init__(self, cfg: DenseConfig, device: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
            self.model = AutoModel.from_pretrained(cfg.model)
        except OSError as e:
            raise UserFacingError(
                f"cannot load dense encoder {cfg.model!r} (retrieval.dense.model): {e}. Use a local model "
                "directory or a hub id that is cached/downloadable."
            ) from None
        self.model.eval().to(self.device)
        if cfg.fp16 and self.device.startswith("cuda"):
            self.model.half()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        import torch

        prefix = self.cfg.query_prefix if is_query else self.cfg.passage_prefix
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.cfg.batch_size):
                batch = [prefix + t for t in texts[i : i + self.cfg.batch_size]]
                enc = self.tokenizer(
                    batch, max_length=self.cfg.max_length, padding=True, truncation=True, return_tensors="pt"
                ).to(self.device)
                if "token_type_ids" in enc and "token_type_ids" not in self._forward_args():
                    enc.pop("token_type_ids")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)
                out.append(pooled.cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def _forward_args(self) -> set[str]:
        import inspect

        if not hasattr(self, "_fwd"):
            self._fwd = set(inspect.signature(self.model.forward).parameters)
        return self._fwd


def _iter_corpus(corpus: Path, start_row: int) -> Iterator[tuple[int, int, dict]]:
    """(row number, byte offset, row) from `start_row` on. The corpus is validated before this runs."""
    offset = 0
    row_no = 0
    with open(corpus, "rb") as f:
        for raw in f:
            if raw.strip():
                if row_no >= start_row:
                    yield row_no, offset, json.loads(raw)
                row_no += 1
            offset += len(raw)


def build_dense_index(
    corpus: Path, work_dir: Path, cfg: DenseConfig, n_rows: int, device: str | None = None
) -> dict:
    """Encode the corpus into `work_dir`, then write faiss.index + doc_offsets.npy.

    Resumable at any point: shards are saved atomically and counted from shard 0 on (a temp file of a shard
    being written when the process died is removed); faiss.index and then doc_offsets.npy are written
    atomically, and only once doc_offsets.npy exists are the shards deleted, so a rerun that finds it skips
    straight to the clean-up.
    """
    import faiss
    from asearcher.utils.progress import progress as progress_bar

    encoder = E5Encoder(cfg, device)
    shard_dir = work_dir / "emb_shards"
    offsets_file = work_dir / "doc_offsets.npy"
    if not offsets_file.exists():
        shard_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*work_dir.glob(".tmp-*"), *shard_dir.glob(".tmp-*")]:  # half-written by a killed run
            stale.unlink()
        _encode_shards(encoder, corpus, shard_dir, n_rows, progress_bar)
        index = faiss.IndexFlatIP(encoder.dim)
        all_offsets = []
        for shard in sorted(shard_dir.glob("shard_*.npz")):
            data = np.load(shard)
            index.add(np.ascontiguousarray(data["emb"], dtype=np.float32))
            all_offsets.append(data["offsets"])
        with atomic_path(work_dir / "faiss.index") as tmp:
            faiss.write_index(index, str(tmp))
        with atomic_path(offsets_file, suffix=".npy") as tmp:
            np.save(tmp, np.concatenate(all_offsets) if all_offsets else np.zeros(0, np.int64))
    shutil.rmtree(shard_dir, ignore_errors=True)
    return {"dim": encoder.dim, "model": cfg.model, "max_length": cfg.max_length}


def _encode_shards(encoder: E5Encoder, corpus: Path, shard_dir: Path, n_rows: int, progress_bar) -> None:
    """Save shard_000000.npz, shard_000001.npz, ... of EMB_SHARD_ROWS passages each, from the first one
    missing on (shards after a missing one are encoded again)."""
    done = 0
    while (shard_dir / f"shard_{done:06d}.npz").exists():
        done += 1
    for later in shard_dir.glob("shard_*.npz"):
        if int(later.stem.split("_")[1]) >= done:
            later.unlink()
    start = done * EMB_SHARD_ROWS
    if start:
        log.info("resuming dense build at row %d (%d shards done)", start, done)
    bar = progress_bar(total=n_rows, initial=min(start, n_rows), desc="encoding passages", unit="doc")
    texts, offsets = [], []

    def flush(shard_idx: int) -> None:
        emb = encoder.encode(texts, is_query=False)
        with atomic_path(shard_dir / f"shard_{shard_idx:06d}.npz", suffix=".npz") as tmp:
            np.savez(tmp, emb=emb, offsets=np.asarray(offsets, dtype=np.int64))
        bar.update(len(texts))
        texts.clear()
        offsets.clear()

    for row_no, offset, row in _iter_corpus(corpus, start):
        texts.append(str(row["contents"]))
        offsets.append(offset)
        if len(texts) == EMB_SHARD_ROWS:
            flush(row_no // EMB_SHARD_ROWS)
    if texts:
        flush((n_rows - 1) // EMB_SHARD_ROWS)
    bar.close()
