"""Weight sync: time to publish one policy version and have every rollout engine load it, by disk, object store and
in-memory broadcast, side by side.

REAL: the torch trainer (float32 master weights) as the sender, `WeightSync` as the RL controller uses it, and
rollout workers that are the real Ray actors (`RolloutWorker`) hosting a real `TransformersEngine` (no agent or tools:
only weights move here). Models: the tiny model built from the mirror corpus (the CPU default), and a random-init
Qwen2 of ~0.5B parameters (Qwen2.5-0.5B's shape: hidden 896, 24 layers, vocab 151936, tied embeddings) saved in
--large-dtype (default bfloat16, the dtype GPUs run; engines load it in that dtype, so disk and broadcast move 2
bytes per parameter while the object store moves the trainer's float32 state dict). For 1 and 2 receivers each
mode pushes --repeats versions; the table gives the median seconds per version and each mode's time over the
broadcast's. Every push is checked: each engine's weights must equal the trainer's, cast to the engine's dtype, bit
for bit. Broadcast here is gloo over loopback (CPU); on GPUs it is NCCL.

  python benchmarks/weight_sync.py                   # both models, 1 and 2 receivers: ~5 min on 2 CPU cores
  python benchmarks/weight_sync.py --models tiny     # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import mirror_corpus  # noqa: E402

MODES = ("broadcast", "disk", "object_store")  # run in this order: lightest on memory first


class EngineOnlyFactory:
    """Rollout components with only the engine (weights are all this benchmark moves). Picklable for Ray."""

    def __init__(self, model_dir: str, dtype: str):
        self.model_dir, self.dtype = model_dir, dtype

    def build(self, worker_index: int) -> Any:
        from asearcher.llm.transformers_engine import TransformersEngine
        from asearcher.rl.system.rollout import RolloutComponents

        engine = TransformersEngine(self.model_dir, device="cpu", dtype=self.dtype, max_batch_size=1)
        return RolloutComponents(engine=engine, agent=None, tools=None, score=None)  # type: ignore[arg-type]


def build_large(tiny_dir: Path, out: Path, dtype: str) -> int:
    """A random-init Qwen2 of Qwen2.5-0.5B's shape, saved in `dtype`, with the tiny model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(cfg).to(getattr(torch, dtype))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    del model
    return n


def trainer_digest(trainer: Any, dtype: str) -> str:
    """What an engine in `dtype` holds after a correct update: the trainer's weights cast to it (tied ones too)."""
    import torch

    from asearcher.llm.weight_broadcast import digest

    return digest((k, v.to(getattr(torch, dtype))) for k, v in trainer.model.state_dict().items())


def nudge(trainer: Any) -> None:
    """A new version without a train step: every weight changes (the sync must really move it)."""
    import torch

    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1e-3)


async def time_mode(
    mode: str, trainer: Any, handles: list[Any], dtype: str, out: Path, args
) -> dict[str, Any]:
    from asearcher.rl.system.weight_sync import WeightSync

    sync = WeightSync(mode, out / mode, bucket_mb=args.bucket_mb)
    version = int(trainer.version)
    try:
        t0 = time.perf_counter()
        results = await sync.push(trainer, version, handles)  # broadcast: forms the group
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            version += 1
            nudge(trainer)
            t0 = time.perf_counter()
            results = await sync.push(trainer, version, handles)
            times.append(time.perf_counter() - t0)
            bad = [r for r in results if isinstance(r, BaseException)]
            if bad:
                raise bad[0]
        want = trainer_digest(trainer, dtype)
        got = await asyncio.gather(*(h.weights_digest.remote() for h in handles))
        if any(g != want for g in got):
            raise SystemExit(f"{mode}: an engine's weights differ from the trainer's after the update")
    finally:
        sync.close()
    trainer.version = version
    return {"first_s": first, "s": statistics.median(times), "all_s": times}


async def run_model(
    name: str, model_dir: Path, dtype: str, receivers: list[int], out: Path, args
) -> list[dict]:
    import ray

    from asearcher.config import RLConfig
    from asearcher.rl.system.rollout import spawn_worker
    from asearcher.rl.trainers.torch_backend import TorchTrainer

    trainer = TorchTrainer(str(model_dir), RLConfig())
    factory = EngineOnlyFactory(str(model_dir), dtype)
    rows = []
    for n in receivers:  # fresh engines per count: on a shared 24 GB machine the 0.5B model's copies add up
        t0 = time.perf_counter()
        workers = [spawn_worker(factory, i, 1, 1.0, 0) for i in range(n)]
        try:
            await asyncio.gather(*(w.ping.remote() for w in workers))
            print(f"[{name}] {n} engine(s) up in {time.perf_counter() - t0:.1f} s", flush=True)
            row: dict[str, Any] = {"model": name, "receivers": n}
            for mode in args.modes:
                r = await time_mode(mode, trainer, workers, dtype, out / f"{name}-{n}", args)
                row[mode] = r["s"]
                row[f"{mode}_first"] = r["first_s"]
                each = ", ".join(f"{t:.3f}" for t in r["all_s"])
                print(f"[{name}] {n} receiver(s), {mode}: {r['s']:.3f} s per version ({each})", flush=True)
            rows.append(row)
        finally:
            for w in workers:
                ray.kill(w)
    return rows


def print_table(rows: list[dict], modes: list[str], sizes: dict[str, str]) -> None:
    ref = "broadcast" if "broadcast" in modes else modes[0]
    head = ["model", "receivers", *[f"{m} s" for m in modes], *[f"{m}/{ref}" for m in modes if m != ref]]
    lines = [head]
    for r in rows:
        cells = [f"{r['model']} ({sizes[r['model']]})", str(r["receivers"])]
        cells += [f"{r[m]:.3f}" for m in modes]
        cells += [f"{r[m] / r[ref]:.2f}x" for m in modes if m != ref]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print("\n== seconds to publish one version and have every engine load it (median), and ratios")
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    if ref == "broadcast":
        firsts = ", ".join(f"{r['broadcast_first']:.2f} s" for r in rows)
        print(f"broadcast's first push, which also forms the group: {firsts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,0.5b", help="comma-separated: tiny, 0.5b (default both)")
    ap.add_argument("--receivers", default="1,2", help="comma-separated receiver (rollout engine) counts")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--large-dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="dtype the ~0.5B model is saved and served in")  # fmt: skip
    ap.add_argument(
        "--bucket-mb", type=float, default=256, help="broadcast bucket size (rl.weight_sync_bucket_mb)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed versions per mode (after one untimed push)")
    ap.add_argument(
        "--mirror", help="release mirror (default $ASEARCHER_MIRROR): its corpus trains the tokenizer"
    )
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in args.modes if m not in MODES]:
        ap.error(f"--modes: unknown {bad} (choose from {', '.join(MODES)})")
    models = [m for m in args.models.split(",") if m]
    if bad := [m for m in models if m not in ("tiny", "0.5b")]:
        ap.error(f"--models: unknown {bad} (tiny, 0.5b)")
    receivers = sorted({int(x) for x in args.receivers.split(",") if x})
    corpus = mirror_corpus(args.mirror)

    from asearcher.llm.tiny import build_tiny_model
    from asearcher.utils.ray_start import ensure_ray

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="weight-sync-bench-") as tmp:
        tmp_path = Path(tmp)
        meta = build_tiny_model(corpus, tmp_path / "tiny")
        sizes = {"tiny": f"{meta['params'] / 1e6:.1f}M fp32"}
        dirs = {"tiny": (tmp_path / "tiny", "float32")}
        if "0.5b" in models:
            n = build_large(tmp_path / "tiny", tmp_path / "large", args.large_dtype)
            sizes["0.5b"] = f"{n / 1e9:.2f}B {'bf16' if args.large_dtype == 'bfloat16' else 'fp32'}"
            dirs["0.5b"] = (tmp_path / "large", args.large_dtype)
        ensure_ray(num_cpus=2)
        rows: list[dict] = []
        for m in models:
            model_dir, dtype = dirs[m]
            rows += asyncio.run(run_model(m, model_dir, dtype, receivers, tmp_path / "sync", args))
    print_table(rows, args.modes, sizes)
    print(f"total {time.perf_counter() - t_start:.0f} s (measured on a shared machine: other jobs add noise)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "sizes": sizes}, indent=2))


if __name__ == "__main__":
    main()
