"""Weights of a Hugging Face checkpoint directory, and the dtype an engine loads them in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: Any, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        # float32 on CPU (bf16 matmuls are slow there); bf16 on GPUs that support it
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (auto | float32 | bfloat16 | float16)")
    return _DTYPES[dtype]


def load_state_dict_from_dir(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights of an HF checkpoint dir (safetensors, sharded or not; else pytorch_model.bin)."""
    from safetensors.torch import load_file

    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        sd: dict[str, torch.Tensor] = {}
        for f in files:
            sd.update(load_file(str(path / f)))
        return sd
    if (path / "model.safetensors").exists():
        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").exists():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no model weights (model.safetensors / pytorch_model.bin) in {path}")
