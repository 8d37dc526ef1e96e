"""Cost as the work grows: index, retrieval server, eval, trainer and engine, each measured at several sizes.

Every section prints one table: a row per size, each value with its ratio to the smallest size, and the
exponent b of a power law y = a * x**b fitted by least squares on the logs (b = 1: linear growth; for a rate,
b = 1 means it grows in proportion to the size). Sections (pick with --only, default all):

  index    BM25 (Anserini via `asearcher index`) and E5+FAISS build time and on-disk size vs passages (prefixes
           of the mirror corpus). E5 runs on the CPU with a tiny random-init BERT encoder built here (its
           dimension is printed); vector memory is also given as it would be at 768-d (E5-base). FAISS flat
           search ms/query (batch 64) at each size.
  server   the real retrieval server (subprocess on 127.0.0.1, BM25 over each prefix) under 64 keep-alive
           clients: queries/s, p50/p99 latency and server RSS vs passages.
  eval     eval trajectories/s vs trajectories in flight (1, 4, 16, 64): real retrieval server, agent and eval
           runner, an injected tool latency; the engine is SIMULATED (a scripted engine double that sleeps a
           fixed time per call, from benchmarks/eval_concurrency.py), so this is the harness's scaling.
  trainer  the real TorchTrainer: one step on a group of two packed 8-turn trajectories of L tokens, one per
           micro-batch (512 .. 8k, then doubling while the time budget allows); a fresh process per model, the
           kernel's peak-RSS mark reset before each step; the tiny model and a larger random-init Qwen2 config.
           Once more with activation checkpointing at one length (a fresh process).
  engine   the TransformersEngine (tiny model): generated tokens/s vs requests in flight (1, 4, 16, 32).

  python benchmarks/scaling.py                              # all sections: 6-9 min on 2 shared cores
  python benchmarks/scaling.py --only index,server --sizes 0.125,0.25,0.5,1 --output scaling.json

The machine's load average is printed at the start and end: on a shared machine the timings include others'
work. Needs the release mirror (--mirror or $ASEARCHER_MIRROR); downloads nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini checks it at import time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import dir_bytes, fit_power_law, fmt, mirror_corpus, mirror_root, print_table  # noqa: E402

SECTIONS = ("index", "server", "eval", "trainer", "engine")
PAPER_PASSAGES = 21_015_324  # wiki-18 (DPR 100-word passages)
E5_BASE_DIM = 768
LARGER_QWEN2 = {
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
}


# ------------------------------------------------------------------------------------------------------------
# shared state: the work directory, corpus prefixes, indexes and models built once and reused across sections
class Work:
    def __init__(self, args: argparse.Namespace, root: Path):
        self.args = args
        self.root = root
        self.corpus = mirror_corpus(args.mirror)
        self.mirror = mirror_root(args.mirror)
        with open(self.corpus, "rb") as f:
            self.total = sum(1 for line in f if line.strip())
        self.sizes = parse_sizes(args.sizes, self.total)
        self.meta: dict[tuple[str, int], dict] = {}

    def prefix(self, n: int) -> Path:
        """The first n passages of the corpus (the corpus itself for all of them)."""
        if n == self.total:
            return self.corpus
        out = self.root / f"corpus_{n}.jsonl"
        if not out.exists():
            with open(self.corpus, "rb") as src, open(out, "wb") as dst:
                kept = 0
                for line in src:
                    if line.strip():
                        dst.write(line)
                        kept += 1
                        if kept == n:
                            break
        return out

    def build_index(self, backend: str, n: int) -> tuple[Path, dict]:
        """Build (once) the `backend` index of the n-passage prefix; returns its directory and index_meta.

        BM25 runs `asearcher index` in a fresh process (the JVM stays out of this one); E5 runs build_index here
        (no JVM; one torch import for every size). build_seconds in the metadata excludes process start-up.
        """
        out = self.root / f"{backend}_{n}"
        if (backend, n) in self.meta:
            return out, self.meta[(backend, n)]
        old = self.reusable(out, backend, n)
        if old:  # left in --work-dir by an earlier run with the same corpus prefix and settings
            self.meta[(backend, n)] = old
            return out, old
        t0 = time.perf_counter()
        if backend == "bm25":
            cmd = [sys.executable, "-m", "asearcher.cli", "--no-progress", "--log-level", "WARNING", "index",
                   "--corpus", str(self.prefix(n)), "--output", str(out), "--backend", "bm25",
                   "--threads", str(self.args.index_threads), "--force"]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"index build failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
            meta = json.loads((out / "index_meta.json").read_text())
        else:
            from asearcher.config import RetrievalConfig
            from asearcher.retrieval.index import build_index

            self.torch_threads()
            dense = {"model": str(self.e5_encoder()), "max_length": self.args.e5_max_length, "batch_size": 64}
            cfg = RetrievalConfig(backend="e5", threads=self.args.torch_threads, dense=dense)
            meta = build_index(self.prefix(n), out, cfg, device="cpu", force=True)
        meta["wall_seconds"] = time.perf_counter() - t0
        self.meta[(backend, n)] = meta
        return out, meta

    def reusable(self, out: Path, backend: str, n: int) -> dict | None:
        try:
            meta = json.loads((out / "index_meta.json").read_text())
        except (OSError, ValueError):
            return None
        same = meta.get("doc_count") == n and meta.get("corpus", {}).get("path") == str(
            self.prefix(n).resolve()
        )
        if backend == "e5":
            p = meta.get("params", {})
            same = (
                same
                and p.get("model") == str(self.e5_encoder())
                and p.get("max_length") == self.args.e5_max_length
            )
        return dict(meta, reused=True) if same else None

    def torch_threads(self) -> None:
        import torch

        torch.set_num_threads(self.args.torch_threads)

    def e5_encoder(self) -> Path:
        out = self.root / f"tiny_e5_{self.args.e5_dim}"
        if not (out / "config.json").exists():
            from asearcher.llm.tiny import build_tiny_encoder

            build_tiny_encoder(self.corpus, out, dim=self.args.e5_dim)
        return out

    def tiny_model(self, name: str = "tiny", **overrides: int) -> Path:
        """The CPU default's tiny Qwen2 (configs' sizes), or a larger random-init one with `overrides`."""
        from asearcher.config import TinyModelConfig
        from asearcher.llm.tiny import build_tiny_model

        out = self.root / name
        if not (out / "config.json").exists():
            build_tiny_model(self.corpus, out, TinyModelConfig(max_position_embeddings=1 << 17, **overrides))
        return out


def parse_sizes(spec: str, total: int) -> list[int]:
    """'0.25,0.5,1' (fractions of the corpus) or '5000,20000' (passages) -> sorted passage counts."""
    sizes = []
    for item in spec.split(","):
        v = float(item)
        n = round(v * total) if v <= 1 else int(v)
        if not 100 <= n <= total:
            sys.exit(
                f"--sizes: {item} is {n} passages; use 100..{total} passages or a fraction of the corpus"
            )
        sizes.append(n)
    if len(set(sizes)) < 2:
        sys.exit("--sizes: give at least two different sizes (three or more for a meaningful fit)")
    return sorted(set(sizes))


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------------------------
def section_index(w: Work) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(w.args.torch_threads)
    rows = []
    for n in w.sizes:
        bm25_dir, bm25 = w.build_index("bm25", n)
        e5_dir, e5 = w.build_index("e5", n)
        index = faiss.read_index(str(e5_dir / "faiss.index"))
        rng = np.random.default_rng(0)
        q = rng.standard_normal((64, index.d)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        index.search(q, 5)  # warm-up
        runs = []
        for _ in range(7):  # the fastest run: the least disturbed by other jobs on the machine
            t0 = time.perf_counter()
            index.search(q, 5)
            runs.append(time.perf_counter() - t0)
        flat_ms = min(runs) / len(q) * 1000
        vec_bytes = (e5_dir / "faiss.index").stat().st_size
        rows.append(
            {
                "passages": n,
                "corpus_MB": w.prefix(n).stat().st_size / 1e6,
                "bm25_build_s": bm25["build_seconds"],
                "bm25_lucene_s": bm25["indexer_seconds"],
                "bm25_MB": dir_bytes(bm25_dir) / 1e6,
                "e5_build_s": e5["build_seconds"],
                "e5_MB": dir_bytes(e5_dir) / 1e6,
                "e5_dim": int(e5["dim"]),
                "vectors_768d_MB": vec_bytes / e5["dim"] * E5_BASE_DIM / 1e6,
                "flat_ms_per_query": flat_ms,
                # a flat scan reads n x d floats per query: cost scales with d (assumption, not measured)
                "flat_ms_768d": flat_ms * E5_BASE_DIM / index.d,
            }
        )
    bm25_cols = ["bm25_build_s", "bm25_lucene_s", "bm25_MB"]
    e5_cols = ["e5_build_s", "e5_MB", "vectors_768d_MB", "flat_ms_per_query", "flat_ms_768d"]
    fits = print_table(
        f"BM25 index (Anserini, {w.args.index_threads} threads, raw rows stored) vs passages",
        rows,
        "passages",
        bm25_cols,
    )
    target = (PAPER_PASSAGES, "wiki-18 (21M passages)")
    extra = marginal_extrapolation(rows, "passages", bm25_cols, *target)
    fits |= print_table(
        f"E5 + FAISS flat index vs passages (tiny random-init encoder: dim {rows[0]['e5_dim']}, max_length "
        f"{w.args.e5_max_length}, {w.args.torch_threads} torch thread(s); flat search: batch 64, top-5; "
        "*_768d: scaled to E5-base's 768-d by d)",
        rows,
        "passages",
        e5_cols,
    )
    extra |= marginal_extrapolation(rows, "passages", e5_cols, *target)
    if any(m.get("reused") for m in w.meta.values()):
        print("  (indexes reused from --work-dir: their build times are from the run that built them)")
    return {"rows": rows, "fits": fits, "at_21M": extra}


def marginal_extrapolation(rows: list[dict], x: str, cols: list[str], target: float, label: str) -> dict:
    """Extrapolate each column to x = target two ways: the slope of a straight-line fit y = c + s * x (the
    marginal cost per unit, which fixed costs such as JVM start-up do not distort) and the power law. A slope
    <= 0 means the size effect drowned in noise or fixed costs at these sizes: no linear figure then."""
    out = {}
    print(f"  extrapolated to {label}: straight-line fit (marginal cost) | power law")
    xs = [r[x] for r in rows]
    for c in cols:
        ys = [r[c] for r in rows]
        slope, icept = np.polyfit(xs, ys, 1)
        linear = float(icept + slope * target) if slope > 0 else None
        fit = fit_power_law(xs, ys)
        power = fit[0] * target ** fit[1] if fit else None
        out[c] = {"linear": linear, "per_unit": float(slope), "power_law": power}
        print(f"    {c:>20}: {fmt(linear):>10} | {fmt(power):>10}")
    return out


# ------------------------------------------------------------------------------------------------------------
def section_server(w: Work) -> dict[str, Any]:
    from retrieval_throughput import load_queries, measure_server

    from asearcher.config import RetrievalConfig
    from asearcher.retrieval.service import running_server

    queries = load_queries(w.mirror)
    if not queries:
        sys.exit(f"no benchmark questions under {w.mirror}/ASearcher-test-data to use as queries")
    rows = []
    cfg = RetrievalConfig()
    for n in w.sizes:
        index, _ = w.build_index("bm25", n)
        with running_server(index, retrieval=cfg) as srv:
            measure_server(srv.url, queries, 64, 2.0, 5)  # warm-up: JIT, page cache, connections
            one = measure_server(srv.url, queries, 1, w.args.server_seconds / 2, 5)
            r = measure_server(srv.url, queries, 64, w.args.server_seconds, 5)
            rss = proc_rss_mb(srv.process.pid)
        rows.append({"passages": n, "qps": r["qps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                     "errors": r["errors"], "p50_1_client_ms": one["p50_ms"], "server_rss_MB": rss})  # fmt: skip
    cols = ["qps", "p50_ms", "p99_ms", "p50_1_client_ms", "server_rss_MB"]
    fits = print_table(
        f"retrieval server (BM25, top-5; 64 clients unless named, {w.args.server_seconds:.0f} s per point) vs passages",
        rows,
        "passages",
        cols,
    )
    return {"rows": rows, "fits": fits}


def fresh_dir(path: Path) -> Path:
    """An empty directory (the eval runner resumes whatever an earlier run left in --work-dir)."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def proc_rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float | None:
    """A process's resident memory (VmRSS) or its peak since start or the last reset (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------------------------------
def section_eval(w: Work) -> dict[str, Any]:
    from eval_concurrency import measure
    from transformers import AutoTokenizer

    from asearcher.config import RetrievalConfig
    from asearcher.eval.loaders import load_benchmark
    from asearcher.retrieval.service import running_server

    tiny = w.tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    index, _ = w.build_index("bm25", w.total)
    levels = [int(c) for c in w.args.eval_inflight.split(",")]
    base = load_benchmark("Bamboogle", w.mirror / "ASearcher-test-data")
    n_max = max(max(4, 2 * c) for c in levels)
    rows_q = [dict(r, id=f"{r['id']}-{i}") for i, r in enumerate((base * (n_max // len(base) + 1))[:n_max])]
    a = argparse.Namespace(
        engine="double",
        searches=2,
        tool_latency_ms=w.args.tool_latency_ms,
        llm_latency_ms=20.0,
        tiny_dir=tiny,
    )
    pages = w.corpus.parent / "wiki_webpages.jsonl"
    rows = []
    with running_server(
        index, w.corpus, pages if pages.exists() else None, retrieval=RetrievalConfig()
    ) as srv:
        asyncio.run(measure(4, 4, rows_q, a, tokenizer, srv.url, fresh_dir(w.root / "eval_warm")))
        for c in levels:
            n = max(4, 2 * c)
            r = asyncio.run(measure(c, n, rows_q, a, tokenizer, srv.url, fresh_dir(w.root / f"eval_{c}")))
            rows.append({"in_flight": c, "trajectories": n, "traj_per_s": r["rate"], "wall_s": r["wall_s"],
                         "errors": r["errors"]})  # fmt: skip
    fits = print_table(
        "eval throughput vs trajectories in flight (engine SIMULATED: scripted double, 20 ms per LLM call, "
        f"2 searches + answer; real server + {w.args.tool_latency_ms:.0f} ms injected per tool call)",
        rows,
        "in_flight",
        ["traj_per_s"],
    )
    return {"rows": rows, "fits": fits, "simulated": "engine (scripted double)"}


# ------------------------------------------------------------------------------------------------------------
def trainer_child(spec: dict[str, Any]) -> None:
    """Train steps at growing lengths in this (fresh) process, one JSON line per point on stdout.

    Each step: one group of two L-token trajectories. Memory is the process's RSS as the kernel counts it
    (tracemalloc does not see torch's allocations): before each step the peak mark is reset (/proc/self/clear_refs),
    so VmHWM afterwards is that step's peak (ru_maxrss is not: it also keeps the mark of any thread that exited
    earlier); step_MB is that peak minus the RSS just before the step. A
    warm-up step at 128 tokens first allocates the AdamW state and one-time buffers. After the first three
    lengths, stops when the next step, predicted from the growth so far, would not fit in the time budget.
    """
    import torch

    from asearcher.config import RLConfig
    from asearcher.rl.trainers.torch_backend import TorchTrainer

    torch.set_num_threads(spec["threads"])
    cap = max(max(spec["lengths"]), spec["max_length"])
    cfg = RLConfig(
        max_tokens_per_mb=cap,
        pack_max_tokens=cap,
        gradient_checkpointing=spec["checkpointing"],
        optim={"lr": 1e-5},
    )
    trainer = TorchTrainer(spec["model"], cfg)
    vocab = trainer.model.config.vocab_size
    params = sum(p.numel() for p in trainer.model.parameters())
    trainer.train_step([synthetic_group(128, vocab)])
    deadline = time.perf_counter() + spec["budget_s"]
    rows: list[dict[str, Any]] = []
    todo = sorted(spec["lengths"])
    while todo:
        L = todo.pop(0)
        if len(rows) >= 3 and time.perf_counter() + predict_step_s(rows, L) > deadline:
            print(json.dumps({"stopped_before": L}), flush=True)
            break
        group = synthetic_group(L, vocab)
        trainer.cfg.max_tokens_per_mb = (
            L  # one trajectory per micro-batch: the step holds one L-token sequence
        )
        release_free_heap()
        peak_reset = reset_peak_rss()
        before_mb = proc_rss_mb() or 0.0
        t0 = time.perf_counter()
        m = trainer.train_step([group])
        step_s = time.perf_counter() - t0
        peak_mb = peak_rss_mb()
        assert m["n_seq_tokens"] == 2 * L, m  # one packed sequence per trajectory, nothing cut
        rows.append({"tokens": L, "step_s": step_s, "tokens_per_s": 2 * L / step_s, "peak_MB": peak_mb,
                     "step_MB": peak_mb - before_mb,
                     "step_KB_per_token": (peak_mb - before_mb) * 1024 / L, "rss_before_MB": before_mb,
                     "params": params, "peak_is_per_step": peak_reset})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        if not todo and 2 * L <= spec["max_length"]:
            todo.append(2 * L)  # keep doubling while the budget allows


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False where that is not allowed, and then the peak is
    the process's since its start (lengths only go up, so still the longest step's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_rss_mb() -> float:
    """VmHWM (reset by reset_peak_rss), or ru_maxrss where /proc is unavailable."""
    return proc_rss_mb("self", "VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_group(L: int, vocab: int, turns: int = 8) -> Any:
    """Two L-token trajectories of `turns` LLM calls, rewards 0 and 1. Each call's input is the previous context
    plus a tool-result chunk (3/4 of the turn's tokens), its output the other 1/4; packing appends every call to
    one sequence (the upstream token-concatenation scheme), so the trainer sees one L-token sequence each."""
    import torch

    from asearcher.agent.trajectory import LLMCall, Trajectory
    from asearcher.rl.algo.types import Group, ScoredTrajectory

    gen = torch.Generator().manual_seed(L)
    samples = []
    for i in range(2):
        t = Trajectory(qid="q", question="q?", answers=["a"], agent="bench", prompt_hash="h", sample_idx=i)
        ctx: list[int] = []
        for k in range(turns):
            chunk = L // turns if k < turns - 1 else L - (turns - 1) * (L // turns)
            n_out = chunk // 4
            ctx += torch.randint(3, vocab, (chunk - n_out,), generator=gen).tolist()
            out = torch.randint(3, vocab, (n_out,), generator=gen).tolist()
            t.events.append(LLMCall(list(ctx), out, [-7.0] * n_out, [0] * n_out, "stop"))
            ctx += out
        samples.append(ScoredTrajectory(t, float(i)))
    return Group("q", "q?", ["a"], samples, 0)


def predict_step_s(rows: list[dict[str, Any]], L: int) -> float:
    """Step time at L tokens from the growth between the last two points (at least linear)."""
    last, prev = rows[-1], rows[-2]
    b = np.log(last["step_s"] / prev["step_s"]) / np.log(last["tokens"] / prev["tokens"])
    return last["step_s"] * (L / last["tokens"]) ** max(b, 1.0)


def run_trainer_child(spec: dict[str, Any], timeout_s: float) -> tuple[list[dict[str, Any]], str]:
    """Run trainer_child in a fresh process; return its points and why it ended."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trainer-child", json.dumps(spec)]
    # a fixed mmap threshold: glibc then maps every large tensor on its own and returns it to the kernel when
    # freed, so the RSS before a step is what is live, not what earlier steps freed into the heap
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        stdout, why = (
            proc.stdout,
            "" if proc.returncode == 0 else f"failed (exit {proc.returncode}): {proc.stderr[-800:]}",
        )
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        why = f"stopped after {timeout_s:.0f} s"
    rows = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            if "stopped_before" in d:
                why = f"next length {d['stopped_before']} predicted past the time budget"
            else:
                rows.append(d)
    return rows, why


def section_trainer(w: Work) -> dict[str, Any]:
    models = {"tiny": w.tiny_model()}
    if not w.args.no_larger:
        models["larger"] = w.tiny_model("larger", **LARGER_QWEN2)
    lengths = [int(x) for x in w.args.trainer_lengths.split(",")]
    out: dict[str, Any] = {}
    for name, path in models.items():
        spec = {"model": str(path), "lengths": lengths, "max_length": w.args.trainer_max_length,
                "budget_s": w.args.trainer_budget_s, "threads": w.args.torch_threads, "checkpointing": False}  # fmt: skip
        rows, why = run_trainer_child(spec, w.args.trainer_budget_s + 600)
        params = rows[0]["params"] if rows else 0
        fits = print_table(
            f"trainer step vs trajectory length: TorchTrainer (fp32, AdamW, decoupled PPO), one group of 2 "
            f"trajectories of L tokens (1/4 generated), one per micro-batch; {name} model, {params:,} parameters",
            rows,
            "tokens",
            ["step_s", "tokens_per_s", "peak_MB", "step_MB", "step_KB_per_token"],
        )
        print(f"  longest: {rows[-1]['tokens'] if rows else '-'} tokens ({why or 'all lengths done'})")
        ckpt = None
        if rows and w.args.checkpointing_point and name == list(models)[-1]:
            # a fresh process: the run above already holds the memory its steps allocated
            # the longest point that is quick enough to run once more (recomputation adds a forward pass)
            base = [r for r in rows if r["step_s"] <= w.args.trainer_budget_s / 4 or r is rows[0]][-1]
            L = base["tokens"]
            spec = dict(spec, lengths=[L], max_length=L, checkpointing=True, budget_s=1e9)
            got, why_c = run_trainer_child(spec, 4 * base["step_s"] + 600)
            if got:
                c = got[0]
                ckpt = {"tokens": L, "step_s": c["step_s"], "step_MB": c["step_MB"], "peak_MB": c["peak_MB"]}
                print(
                    f"  activation checkpointing at {L} tokens: step {c['step_s']:.2f} s "
                    f"({c['step_s'] / base['step_s']:.2f}x), memory added by the step {c['step_MB']:.0f} MB "
                    f"({c['step_MB'] / max(base['step_MB'], 1e-9):.2f}x of {base['step_MB']:.0f} MB)"
                )
            else:
                print(f"  activation checkpointing at {L} tokens: {why_c}")
        out[name] = {
            "rows": rows,
            "fits": fits,
            "ended": why,
            "checkpointing": ckpt,
            "config": model_config(path),
        }
    return out


def model_config(path: Path) -> dict[str, Any]:
    cfg = json.loads((path / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads")  # fmt: skip
    return {k: cfg.get(k) for k in keys}


# ------------------------------------------------------------------------------------------------------------
def section_engine(w: Work) -> dict[str, Any]:
    from asearcher.llm.engine import GenerationRequest, SamplingParams
    from asearcher.llm.transformers_engine import TransformersEngine

    levels = [int(c) for c in w.args.engine_inflight.split(",")]
    w.torch_threads()
    engine = TransformersEngine(str(w.tiny_model()), max_batch_size=max(levels))
    tok = engine.tokenizer
    texts = ["Who founded the City Bank of New York?", "The capital of France is", "<think>", "Zürich"]

    def request(i: int) -> GenerationRequest:
        ids = tok.encode(texts[i % len(texts)] + " " * (i % 5), add_special_tokens=False)
        sampling = SamplingParams(
            max_new_tokens=w.args.new_tokens, temperature=1.0, seed=i, stop_token_ids=[]
        )
        return GenerationRequest(ids, sampling)

    async def at(c: int, n: int) -> tuple[int, float]:
        gate = asyncio.Semaphore(c)

        async def one(i: int) -> int:
            async with gate:
                return len((await engine.agenerate(request(i))).output_ids)

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one(i) for i in range(n)))
        return sum(counts), time.perf_counter() - t0

    async def run_all() -> list[dict[str, Any]]:
        await at(4, 4)  # warm-up
        rows = []
        for c in levels:
            n = max(4, 2 * c)
            # best of three: a short measurement on a shared machine is easily hit by another job's burst
            tokens, wall = min([await at(c, n) for _ in range(3)], key=lambda tw: tw[1] / tw[0])
            rows.append({"in_flight": c, "requests": n, "tokens": tokens, "tokens_per_s": tokens / wall,
                         "s_per_request": wall / n * c})  # fmt: skip
        await engine.aclose()
        return rows

    rows = asyncio.run(run_all())
    fits = print_table(
        f"engine (TransformersEngine, tiny model, {w.args.new_tokens} new tokens per request, best of 3) vs "
        "requests in flight (s_per_request: latency one request sees)",
        rows,
        "in_flight",
        ["tokens_per_s", "s_per_request"],
    )
    return {"rows": rows, "fits": fits}


RUNNERS = {"index": section_index, "server": section_server, "eval": section_eval, "trainer": section_trainer,
           "engine": section_engine}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {','.join(SECTIONS)}"
    )
    ap.add_argument("--mirror", help="release mirror (default: $ASEARCHER_MIRROR)")
    ap.add_argument(
        "--sizes", default="0.25,0.5,1", help="corpus sizes: fractions of the mirror corpus or passage counts"
    )
    ap.add_argument("--index-threads", type=int, default=2, help="Lucene indexing threads (default 2)")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads for encoder, trainer and engine (default 1: on a shared 2-core machine two OpenMP "
        "threads spin-wait on each other and ran 8x slower than one)",
    )
    ap.add_argument("--e5-dim", type=int, default=32, help="hidden size of the tiny E5-style encoder")
    ap.add_argument(
        "--e5-max-length",
        type=int,
        default=128,
        help="encoder max_length (paper: 256; the tiny encoder's cost "
        "says nothing about E5-base's, so the default keeps it short)",
    )
    ap.add_argument("--server-seconds", type=float, default=5.0, help="measurement time per server point")
    ap.add_argument("--eval-inflight", default="1,4,16,64")
    ap.add_argument(
        "--tool-latency-ms", type=float, default=200.0, help="eval: injected latency per tool call"
    )
    ap.add_argument(
        "--trainer-lengths", default="512,1024,2048,4096,8192", help="trajectory lengths (tokens)"
    )
    ap.add_argument("--trainer-max-length", type=int, default=1 << 17, help="doubling stops here")
    ap.add_argument(
        "--trainer-budget-s",
        type=float,
        default=60.0,
        help="seconds of train steps per model; the first three lengths always run, longer ones while they fit",
    )
    ap.add_argument("--no-larger", action="store_true", help="trainer: tiny model only")
    ap.add_argument(
        "--checkpointing-point",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="trainer: also run one length of the last model with activation checkpointing (a fresh process)",
    )
    ap.add_argument("--engine-inflight", default="1,4,16,32")
    ap.add_argument("--new-tokens", type=int, default=32, help="engine: tokens generated per request")
    ap.add_argument("--work-dir", help="keep corpora, indexes and models here (default: a temp dir)")
    ap.add_argument("--output", help="write all rows and fits as JSON")
    ap.add_argument("--trainer-child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.trainer_child:  # internal: one trainer point in a fresh process
        trainer_child(json.loads(args.trainer_child))
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        sys.exit(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    from asearcher.utils.progress import disable_progress

    disable_progress()  # bars would interleave with the tables (child processes inherit the switch)
    with tempfile.TemporaryDirectory(prefix="asearcher-scaling-") as tmp:
        root = Path(args.work_dir) if args.work_dir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        w = Work(args, root)  # checks the mirror and --sizes before anything runs
        result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_start": load_avg()}}
        result |= {"sizes": w.sizes, "sections": {}}
        print(
            f"{os.cpu_count()} CPUs, load average {load_avg()} at start (a shared machine slows every figure)"
        )
        t_all = time.perf_counter()
        for name in SECTIONS:
            if name in only:
                t0 = time.perf_counter()
                result["sections"][name] = RUNNERS[name](w)
                result["sections"][name]["section_s"] = time.perf_counter() - t0
                print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
        if args.work_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    result["machine"]["load_avg_end"] = load_avg()
    result["total_s"] = time.perf_counter() - t_all
    print(f"\ntotal {result['total_s']:.0f} s; load average {load_avg()} at the end")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
