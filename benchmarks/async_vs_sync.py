"""Asynchronous (eta=4) vs synchronous (eta=0) RL on the same agentic workload, side by side.

Mode `real` (default), the whole stack:
  REAL: the transformers engine (asearcher.llm.transformers_engine) in a Ray rollout worker, the ASearcher agent with
  its prompts and parsing, LocalTools over HTTP to the retrieval server (BM25 over the mirror corpus, a subprocess),
  the paper's reward, the torch trainer (asearcher.rl.trainers.torch_backend: decoupled PPO, AdamW), the Controller
  (staleness-bounded admission, dynamic filtering, object-store weight sync, interruptible generation).
  INJECTED: every tool call first sleeps a delay drawn from a long-tailed distribution shaped like the paper's turn
  counts (asearcher.tools.latency.LongTail: --turn-ms per drawn turn; most calls 1-11 turns, --p-long of them 40+),
  standing in for slow search APIs and for the few trajectories that run for many turns.
  Cores: the driver and trainer get one core, the rollout worker and the retrieval server the other (sched_setaffinity,
  torch.set_num_threads(1)), as trainer and generation get separate GPUs at scale.
  Model: --model DIR (e.g. the SFT warm start, results/cpu-default/sft/model) with --train FILE (its answerable.jsonl),
  else a tiny random-init Qwen2 built in a temporary directory (bigger with --hidden-size/--layers): a random model
  gets reward ~0 whatever it does, so then the comparison is throughput only.
  Both modes run the same steps, batch, group size and rollout capacity (--concurrency groups in flight; by default
  twice the batch, as in configs/default.yaml: eta=0 cannot use more than one batch, eta=4 can).

Mode `simulated`: the old SIMULATED workload (asearcher.rl.simulated): a 6x6 logits-table policy, decode time a sleep
per token, tool latency a sleep per search, turn counts long-tailed, trainer compute padded to a fixed time per step;
real Ray workers, controller and weight sync around it.

Printed per mode: steps/s, trajectories/s, trainer idle fraction (waiting for a batch / wall; and 1 - time in
train_step / wall), generation idle fraction (1 - CPU time of the rollout worker and retrieval server / wall), reward
over time, staleness, the ratios async/sync, how far each run is from a trainer that is never idle (steps/s vs
1 / mean train_step time) and, in real mode, from the limit of the core split (1 / the larger of the rollout's and
the trainer's CPU seconds per step), with where each side waits.

--output X.json writes {"mode", "settings", "summary", "runs"}:
  summary: {"sync": {metric: mean over seeds}, "async": {...}, "ratio": {metric: async/sync}}
  runs:    {"sync": [run per seed], "async": [...]}; a run: {"seed", metric: value..., "curve": [point per step]}
  metrics: steps, wall_s, steps_per_s, steady_steps_per_s (after the first step), traj_per_s, trained_traj_per_s,
  trainer_idle_frac, trainer_not_training_frac, gen_idle_frac, train_s_mean, sync_s_mean, wait_s_mean,
  never_idle_steps_per_s, reward_mean, reward_se (its standard error over steps), reward_first_half, reward_second_half, token_staleness_mean, turns_mean, tool_s_per_traj,
  groups_filtered; real mode adds train_cpu_s_mean, worker_cpu_s_per_step, server_cpu_s_per_step,
  driver_other_cpu_s_per_step, rollout_core_others_frac and trainer_core_others_frac (share of the core's time that
  other processes used, Ray's daemons included), engine_steps_per_s and engine_batch_mean (the rollout engine's
  steps and the sequences each advanced), prefix_hit_frac and prefix_reused_tok_per_s (the engine's prefix cache:
  share of prompts that reused a cached prefix, prompt tokens per second it spared the prefill); simulated mode
  final_policy_reward.
  a curve point: {"wall_s": seconds since the loop started, "steps": trainer steps done, "reward": real: mean
  training reward of the trajectories finished during the step, simulated: expected reward of the weights,
  "staleness": mean token staleness of the trained batch, "trajectories": trajectories generated so far}

  python benchmarks/async_vs_sync.py --model results/cpu-default/sft/model \\
      --train results/cpu-default/sft/model/answerable.jsonl --index results/index/bm25 --output av.json
                                                           # ~6 min on 2 otherwise idle cores
  python benchmarks/async_vs_sync.py                       # tiny random model: throughput only
  python benchmarks/async_vs_sync.py --mode simulated      # SIMULATED workload, ~2-5 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray's memory monitor kills the newest worker when the *machine* runs low, whoever holds the memory: on a shared
# machine that is our 0.5 GB rollout worker. The kernel's OOM killer still applies.
os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini checks it at import time

from _common import mirror_corpus, mirror_root  # noqa: E402

ETAS = {"sync": 0, "async": 4}


# ---- cores ------------------------------------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def pin_process(pid: int, cpus: set[int]) -> None:
    """Every thread of pid and of its descendants to `cpus` (threads created later inherit it)."""
    for p in process_tree(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # a thread or process that just ended


def sched_seconds(pids: list[int]) -> float:
    """Seconds on a CPU, summed over the live threads of `pids` (/proc/<pid>/task/<tid>/schedstat, ns resolution)."""
    total = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def core_busy_seconds(cpu: int) -> float:
    """Seconds core `cpu` ran anything (any process) since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / CLK_TCK
    return 0.0


class CpuSampler:
    """Samples, twice a second, the CPU seconds of the rollout worker(s) (pids written to `pid_dir`), the retrieval
    server (`server` pids and children) and this driver process, and how busy the trainer and rollout cores were
    (any process), so any wall-clock window can be read later. On a shared machine the difference between a core's
    busy time and ours is the time other processes took from it."""

    PARTS = ("worker", "server", "driver", "trainer_core", "rollout_core")

    def __init__(self, pid_dir: Path, server: list[int], cores: tuple[int, int] | None):
        self.pid_dir, self.server, self.cores = pid_dir, server, cores
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[str, float]:
        workers = [int(p.read_text()) for p in self.pid_dir.glob("*.pid")]
        tree = lambda pids: [q for p in pids for q in process_tree(p)]  # noqa: E731
        out = {
            "worker": sched_seconds(tree(workers)),
            "server": sched_seconds(tree(self.server)),
            "driver": sched_seconds([os.getpid()]),
        }
        if self.cores is not None:
            out["trainer_core"], out["rollout_core"] = (core_busy_seconds(c) for c in self.cores)
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.time(), self._sample()))

    def window(self, t0: float, t1: float) -> dict[str, float] | None:
        """Seconds of each part (absent ones left out) and "wall" between the first and last sample in [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return None
        (a, ca), (b, cb) = inside[0], inside[-1]
        return {k: cb[k] - ca[k] for k in self.PARTS if k in ca} | {"wall": b - a}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ---- the real rollout side --------------------------------------------------------------------------------------
class CpuTimedTrainer:
    """Delegates to a trainer; records the CPU seconds of each train_step's thread (torch runs single-threaded here),
    so the compute a step costs can be told apart from time lost waiting for a core on a shared machine."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.cpu_s: list[float] = []

    def train_step(self, groups: list) -> dict[str, float]:
        t0 = time.thread_time()
        out = self.inner.train_step(groups)
        self.cpu_s.append(time.thread_time() - t0)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class EngineProbe:
    """The engine's `on_step` hook: counts decode/prefill steps and the sequences they advanced, and rewrites
    `path` with {"t": epoch, "steps", "rows", "reused", "hits", "misses"} about once a second (the driver reads
    the window it needs; the last three are the engine's prefix-cache counters)."""

    def __init__(self, path: Path):
        self.path, self.steps, self.rows, self.last = path, 0, 0, 0.0

    def __call__(self, engine: Any) -> None:
        self.steps += 1
        self.rows += len(engine.inflight())
        now = time.time()
        if now - self.last >= 1.0:
            self.last = now
            with self.path.open("a") as f:
                pc = engine.prefix_cache_stats()
                f.write(
                    json.dumps(
                        {
                            "t": now,
                            "steps": self.steps,
                            "rows": self.rows,
                            "reused": pc["reused_tokens"],
                            "hits": pc["hits"],
                            "misses": pc["misses"],
                        }
                    )  # fmt: skip
                    + "\n"
                )


def engine_window(path: Path, t0: float, t1: float) -> dict[str, float] | None:
    """Engine steps per second, mean sequences per step, prefix-cache hit rate and prompt tokens it saved per
    second, between the first and last probe line in [t0, t1]."""
    if not path.exists():
        return None
    pts = [json.loads(x) for x in path.read_text().splitlines()]
    pts = [p for p in pts if t0 <= p["t"] <= t1]
    if len(pts) < 2:
        return None
    a, b = pts[0], pts[-1]
    steps = b["steps"] - a["steps"]
    dt = b["t"] - a["t"]
    lookups = (b["hits"] - a["hits"]) + (b["misses"] - a["misses"])
    return {
        "steps_per_s": steps / dt,
        "batch": (b["rows"] - a["rows"]) / max(steps, 1),
        "prefix_hit_frac": (b["hits"] - a["hits"]) / max(lookups, 1),
        "prefix_reused_tok_per_s": (b["reused"] - a["reused"]) / dt,
    }


class PinnedLatencyFactory:
    """The configured rollout stack (asearcher's DefaultRolloutFactory) in a worker pinned to `cpus` with one torch
    thread, its tools behind LatencyTools. Writes the worker's pid to pid_dir (for CPU sampling) and its engine's
    step counts (EngineProbe)."""

    def __init__(self, inner: Any, cpus: set[int] | None, latency: Any, seed: int, pid_dir: str):
        self.inner, self.cpus, self.latency, self.seed, self.pid_dir = inner, cpus, latency, seed, pid_dir

    def build(self, worker_index: int) -> Any:
        import torch

        from asearcher.tools.latency import LatencyTools

        if self.cpus:
            pin_process(os.getpid(), self.cpus)
        torch.set_num_threads(1)
        c = self.inner.build(worker_index)
        c.tools = LatencyTools(c.tools, self.latency, seed=self.seed * 1000 + worker_index)
        c.engine.on_step = EngineProbe(Path(self.pid_dir, f"worker{worker_index}.engine.jsonl"))
        Path(self.pid_dir, f"worker{worker_index}.pid").write_text(str(os.getpid()))
        return c


def ensure_index(corpus: Path, index: Path, config: str) -> Path:
    """`asearcher index` in a subprocess (a no-op when the index is up to date): Lucene starts a JVM, and a JVM in the
    process that also runs Ray crashes it."""
    import subprocess

    if not (index / "index_meta.json").exists():
        print(f"building the BM25 index in {index} (once) ...", flush=True)
    cmd = [sys.executable, "-m", "asearcher.cli", "--no-progress", "index", "--config", config]
    r = subprocess.run(
        [*cmd, "--corpus", str(corpus), "--output", str(index)], capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"could not build or reuse the BM25 index {index}:\n{r.stderr[-2000:]}")
    return index


def build_random_model(corpus: Path, out: Path, a: argparse.Namespace) -> Path:
    from asearcher.config import TinyModelConfig
    from asearcher.llm.tiny import build_tiny_model

    tiny = TinyModelConfig()
    hidden = a.hidden_size or tiny.hidden_size
    cfg = TinyModelConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=a.layers or tiny.num_hidden_layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64),
        tokenizer_corpus_lines=2000,
    )
    meta = build_tiny_model(corpus, out, cfg)
    print(f"built a random-init Qwen2 ({meta['params']:,} params) in {out}", flush=True)
    return out


def real_setup(a: argparse.Namespace, stack: Any) -> dict[str, Any]:
    """Model, questions, config, retrieval server (entered on `stack`): everything the runs share."""
    from asearcher.config import load_config
    from asearcher.retrieval.service import running_server
    from asearcher.rl.system.dataset import load_train_rows

    mirror, corpus = mirror_root(a.mirror), mirror_corpus(a.mirror)
    pages = corpus.parent / "wiki_webpages.jsonl"
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="async-vs-sync-")))
    if a.model:
        model, warm = Path(a.model), True
        if not (model / "config.json").exists():
            sys.exit(f"--model {model}: not a model directory (no config.json)")
    else:
        model, warm = build_random_model(corpus, tmp / "model", a), False
    train = a.train or str(mirror / "ASearcher-train-data" / "ASearcher-Base-35k.jsonl")
    rows = load_train_rows(train, a.questions)
    cfg = load_config(a.config)
    index = ensure_index(corpus, Path(a.index), a.config)
    server = stack.enter_context(running_server(index, corpus, pages, retrieval=cfg.retrieval))
    return {"model": model, "warm": warm, "rows": rows, "cfg": cfg, "server": server, "tmp": tmp}


def run_real(eta: int, a: argparse.Namespace, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    import torch

    from asearcher.rl.system.controller import Controller
    from asearcher.rl.system.rollout import DefaultRolloutFactory
    from asearcher.rl.trainers.torch_backend import TorchTrainer
    from asearcher.tools.latency import LongTail

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the trainer's weight-loading bars, once per run
    cfg = env["cfg"]
    rl = cfg.rl.model_copy(
        update={
            "steps": a.steps,
            "batch_size": a.batch_size,
            "group_size": a.group_size,
            "max_head_offpolicyness": eta,
            "max_concurrent_rollouts": a.concurrency or a.batch_size,
            "rollout_workers": 1,
            "dynamic_filtering": env["warm"]
            if a.dynamic_filtering == "auto"
            else a.dynamic_filtering == "on",
            "checkpoint_every": 10**6,
            "save_rollouts": cfg.rl.save_rollouts.model_copy(update={"enabled": False}),
        }
    )
    engine_cfg = cfg.engine.model_copy(
        update={
            "model": str(env["model"]),
            "device": "cpu",
            "max_batch_size": max(cfg.engine.max_batch_size, rl.max_concurrent_rollouts * rl.group_size),
            "prefix_cache_tokens": a.prefix_cache_tokens,
        }
    )
    inner = DefaultRolloutFactory(engine_cfg, cfg.agent, rl, env["server"].url, tools_cfg=None)
    pid_dir = env["tmp"] / f"pids-eta{eta}-seed{seed}"
    pid_dir.mkdir()
    latency = LongTail(turn_s=a.turn_ms / 1000, p_long=a.p_long, long_min=a.long_min)
    factory = PinnedLatencyFactory(inner, env["gen_cpus"], latency, seed, str(pid_dir))
    torch.set_num_threads(1)
    trainer = CpuTimedTrainer(TorchTrainer(str(env["model"]), rl, device="cpu", seed=seed))
    sampler = CpuSampler(pid_dir, env["server_pids"], env["cores"])
    t_loop: list[float] = []  # epoch time at which the training loop started
    curve: list[dict[str, float]] = []

    def after_step(ctl: Controller, step: int) -> None:
        row = ctl.step_log[-1]
        if not t_loop:
            t_loop.append(time.time() - row["wall_s"])
        curve.append(
            {
                "wall_s": row["wall_s"],
                "steps": step,
                "reward": row["rollout_reward_mean"],
                "staleness": row["token_staleness_mean"],
                "trajectories": ctl.counters.get("groups_done", 0) * rl.group_size,
            }
        )

    try:
        ctl = run_controller(rl, trainer, env["rows"], factory, seed, after_step, a)
    finally:
        sampler.close()
    t0 = t_loop[0]
    out = summarize(ctl.step_log, curve, seed)
    out["train_cpu_s_mean"] = statistics.fmean(trainer.cpu_s)
    cpu = sampler.window(t0, t0 + curve[-1]["wall_s"])
    eng = engine_window(pid_dir / "worker0.engine.jsonl", t0, t0 + curve[-1]["wall_s"])
    if eng is not None:
        out["engine_steps_per_s"], out["engine_batch_mean"] = eng["steps_per_s"], eng["batch"]
        out["prefix_hit_frac"], out["prefix_reused_tok_per_s"] = (
            eng["prefix_hit_frac"],
            eng["prefix_reused_tok_per_s"],
        )
    if cpu is not None:
        out["gen_idle_frac"] = max(0.0, 1 - (cpu["worker"] + cpu["server"]) / cpu["wall"])
        scale = out["wall_s"] / cpu["wall"] / out["steps"]  # window CPU seconds -> per step of the whole loop
        out["worker_cpu_s_per_step"] = cpu["worker"] * scale
        out["server_cpu_s_per_step"] = cpu["server"] * scale
        if (
            "rollout_core" in cpu
        ):  # the share of each core that other processes took (Ray's daemons count there)
            ours = cpu["worker"] + cpu["server"]
            out["rollout_core_others_frac"] = max(0.0, cpu["rollout_core"] - ours) / cpu["wall"]
            out["trainer_core_others_frac"] = max(0.0, cpu["trainer_core"] - cpu["driver"]) / cpu["wall"]
        # the driver's CPU besides train_step: event loop, Ray calls, weight publishing
        out["driver_other_cpu_s_per_step"] = cpu["driver"] * scale - out["train_cpu_s_mean"]
    return out


def run_controller(
    cfg: Any, trainer: Any, rows: list[dict], factory: Any, seed: int, after_step: Any, a: argparse.Namespace
) -> Any:
    """One run of the real Controller (Ray workers from `factory`) until cfg.steps; returns it, shut down."""
    from asearcher.rl.system.controller import Controller
    from asearcher.rl.system.dataset import QuestionStream
    from asearcher.rl.system.rollout import spawn_worker

    ctl = Controller(
        cfg=cfg,
        trainer=trainer,
        stream=QuestionStream(rows, seed=seed),
        spawn_worker=lambda i: spawn_worker(factory, i, cfg.group_size, cfg.temperature, seed),
        after_step=after_step,
        progress=not a.no_progress,
    )

    async def main() -> None:
        try:
            await ctl.run()
        finally:
            await ctl.shutdown()

    asyncio.run(main())
    return ctl


def summarize(log: list[dict[str, Any]], curve: list[dict[str, float]], seed: int) -> dict[str, Any]:
    """The metrics of one run from the controller's step rows (the CPU metrics are added by run_real)."""
    wall = log[-1]["wall_s"]
    n = len(log)
    train_s = [r["train_s"] for r in log]
    half = log[n // 2 :]
    trajs = [r["rollout_trajectories"] for r in log]
    return {
        "seed": seed,
        "steps": n,
        "wall_s": wall,
        "steps_per_s": n / wall,
        "traj_per_s": sum(trajs) / wall,  # every finished trajectory, filtered groups included
        "trained_traj_per_s": sum(r["n_trajectories"] for r in log) / wall,
        "trainer_idle_frac": log[-1]["trainer_idle_frac"],  # waiting for a full batch
        "trainer_not_training_frac": 1 - sum(train_s) / wall,  # + weight publishing and bookkeeping
        "steady_steps_per_s": (n - 1) / (wall - log[0]["wall_s"]) if n > 1 else None,  # after the first batch
        "train_s_mean": statistics.fmean(train_s),
        "sync_s_mean": statistics.fmean(r["sync_s"] for r in log),
        "wait_s_mean": statistics.fmean(r["wait_s"] for r in log),
        "never_idle_steps_per_s": 1 / statistics.fmean(train_s),
        "reward_mean": statistics.fmean(r["rollout_reward_mean"] for r in log),
        "reward_se": statistics.stdev(r["rollout_reward_mean"] for r in log) / n**0.5 if n > 1 else 0.0,
        "reward_first_half": statistics.fmean(r["rollout_reward_mean"] for r in log[: max(1, n // 2)]),
        "reward_second_half": statistics.fmean(r["rollout_reward_mean"] for r in half),
        "token_staleness_mean": statistics.fmean(r["token_staleness_mean"] for r in log),
        "turns_mean": statistics.fmean(r.get("rollout_turns_avg", 0.0) for r in log),
        "tool_s_per_traj": sum(r.get("tool_s_sum", 0.0) for r in log)
        / max(1, sum(r["n_trajectories"] for r in log)),
        "groups_filtered": log[-1]["groups_filtered_total"],
        "curve": curve,
    }


# ---- the SIMULATED workload -------------------------------------------------------------------------------------
def run_simulated(eta: int, a: argparse.Namespace, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    import torch

    from asearcher.config import RLConfig
    from asearcher.rl.simulated import SimFactory, TableTrainer, target_token
    from asearcher.rl.system.controller import Controller

    cfg = RLConfig(
        steps=a.steps,
        batch_size=a.batch_size,
        group_size=a.group_size,
        max_head_offpolicyness=eta,
        max_concurrent_rollouts=a.concurrency or a.batch_size,
        rollout_workers=a.workers,
        checkpoint_every=10**6,
    )
    turns = {"kind": "tail", "p_long": a.p_long, "long_min": a.long_min, "alpha": 2.0, "short_mean": 2.0}
    factory = SimFactory(turns, token_delay_s=a.token_delay, tool_latency_s=a.tool_latency, tokens_per_call=4)
    trainer = TableTrainer(seed=seed, lr=a.lr, train_delay_s=a.train_time)
    rows = [{"qid": f"q{i}", "question": f"question {i}", "answers": ["x"]} for i in range(a.questions)]
    targets = [target_token(r["qid"]) for r in rows]
    curve: list[dict[str, float]] = []

    def policy_reward() -> float:
        """Exact expected reward of the current weights: P(last token == target), averaged over the questions."""
        probs = torch.softmax(trainer.logits.detach(), dim=-1)
        return sum(float(probs[t, t]) for t in targets) / len(targets)

    def after_step(ctl: Controller, step: int) -> None:
        row = ctl.step_log[-1]
        curve.append(
            {
                "wall_s": row["wall_s"],
                "steps": step,
                "reward": policy_reward(),
                "staleness": row["token_staleness_mean"],
                "trajectories": ctl.counters["groups_admitted"] * cfg.group_size,
            }
        )

    ctl = run_controller(cfg, trainer, rows, factory, seed, after_step, a)
    out = summarize(ctl.step_log, curve, seed)
    # the simulated policy's reward is exact: the expected reward of the final weights
    out["final_policy_reward"] = curve[-1]["reward"]
    return out


# ---- report -----------------------------------------------------------------------------------------------------
ROWS = [
    ("steps_per_s", "steps/s"),
    ("steady_steps_per_s", "steps/s after the first step"),
    ("traj_per_s", "trajectories/s (all finished)"),
    ("trained_traj_per_s", "trajectories/s (trained)"),
    ("trainer_idle_frac", "trainer idle (waiting for a batch)"),
    ("trainer_not_training_frac", "trainer not in train_step"),
    ("gen_idle_frac", "generation idle (1 - rollout CPU)"),
    ("train_s_mean", "train_step s/step"),
    ("train_cpu_s_mean", "train_step CPU s/step"),
    ("worker_cpu_s_per_step", "rollout worker CPU s/step"),
    ("server_cpu_s_per_step", "retrieval server CPU s/step"),
    ("driver_other_cpu_s_per_step", "driver CPU s/step besides train_step"),
    ("rollout_core_others_frac", "rollout core: other processes"),
    ("engine_steps_per_s", "engine steps/s (decode or prefill)"),
    ("engine_batch_mean", "engine sequences per step"),
    ("prefix_hit_frac", "prefix-cache hits / prompts"),
    ("prefix_reused_tok_per_s", "prompt tokens not prefilled (cache) / s"),
    ("trainer_core_others_frac", "trainer core: other processes"),
    ("sync_s_mean", "weight sync s/step"),
    ("wait_s_mean", "trainer wait s/step"),
    ("never_idle_steps_per_s", "never-idle limit steps/s"),
    ("reward_mean", "reward, all steps"),
    ("reward_first_half", "reward, first half of steps"),
    ("reward_second_half", "reward, second half of steps"),
    ("final_policy_reward", "expected reward, final weights"),
    ("token_staleness_mean", "token staleness (versions)"),
    ("turns_mean", "LLM turns per trajectory"),
    ("tool_s_per_traj", "tool s per trajectory"),
    ("groups_filtered", "groups filtered (all-equal reward)"),
    ("wall_s", "loop wall s"),
]


def mean_runs(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in runs[0].items():
        if k in ("curve", "seed") or not isinstance(v, (int, float)) and v is not None:
            continue
        vals = [r[k] for r in runs if r.get(k) is not None]
        out[k] = statistics.fmean(vals) if vals else None
    return out


def report(a: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], header: str) -> dict[str, Any]:
    mean = {m: mean_runs(runs[m]) for m in ETAS}
    ratio = {
        k: (
            mean["async"][k] / mean["sync"][k]
            if mean["sync"].get(k) and mean["async"].get(k) is not None
            else None
        )
        for k in mean["sync"]
    }
    print(header)
    print(f"\nmeans over seeds {a.seeds}")
    print(f"{'metric':<36}{'sync (eta=0)':>14}{'async (eta=4)':>15}{'async/sync':>12}")
    for k, label in ROWS:
        if k not in mean["sync"]:
            continue
        s, x = mean["sync"][k], mean["async"][k]
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        r = "-" if ratio.get(k) is None else f"{ratio[k]:.2f}x"
        print(f"{label:<36}{fmt(s):>14}{fmt(x):>15}{r:>12}")
    what = (
        "expected reward of the weights after each step"
        if a.mode == "simulated"
        else "mean training reward of the trajectories finished during each step"
    )
    print(f"\nreward over time ({what}; loop seconds:reward, per seed):")
    for m in ETAS:
        for r in runs[m]:
            pts = " ".join(f"{p['wall_s']:.0f}s:{p['reward']:+.2f}" for p in r["curve"])
            print(f"  {m:<5} seed {r['seed']}: {pts}")
    speed = ratio["steps_per_s"]
    print(f"\nsteps/s async/sync: {speed:.2f}x (target >= 2x)")
    x = mean["async"]
    print(
        f"async trainer idle {x['trainer_idle_frac']:.0%} (target < 20%); async runs at "
        f"{x['steps_per_s'] / x['never_idle_steps_per_s']:.0%} of a never-idle trainer "
        f"({x['steps_per_s']:.3f} vs {x['never_idle_steps_per_s']:.3f} steps/s = 1 / mean train_step time); "
        f"sync at {mean['sync']['steps_per_s'] / mean['sync']['never_idle_steps_per_s']:.0%}"
    )
    if x.get("gen_idle_frac") is not None:
        s = mean["sync"]
        print(
            f"where async waits: per step the trainer trains {x['train_s_mean']:.1f} s, publishes weights "
            f"{x['sync_s_mean']:.1f} s and waits {x['wait_s_mean']:.1f} s for a batch; the rollout core ran generation "
            f"{1 - x['gen_idle_frac']:.0%} of the time; sync waits {s['wait_s_mean']:.1f} s per step for its batch"
        )
        gen_cpu = x["worker_cpu_s_per_step"] + x["server_cpu_s_per_step"]
        print(
            f"compute per step in async: rollout {gen_cpu:.1f} CPU s (sync: "
            f"{s['worker_cpu_s_per_step'] + s['server_cpu_s_per_step']:.1f}; async re-prefills the running requests "
            f"after each weight update), trainer {x['train_cpu_s_mean']:.1f} CPU s: with one core each, the trainer can be kept busy "
            f"only if rollout <= trainer (here {gen_cpu / x['train_cpu_s_mean']:.2f}x; the paper gives generation 3x "
            "the trainer's GPUs)"
        )
        bound = 1 / max(gen_cpu, x["train_cpu_s_mean"])
        print(
            f"limit of this core split: {bound:.3f} steps/s (1 / the larger of the two); async reached "
            f"{x['steps_per_s'] / bound:.0%} of it"
        )
        if x.get("rollout_core_others_frac") is not None:
            print(
                "other processes used the cores (share of the loop's time, rollout core / trainer core): "
                + ", ".join(
                    f"{m} {mean[m]['rollout_core_others_frac']:.0%} / {mean[m]['trainer_core_others_frac']:.0%}"
                    for m in ETAS
                )
                + " (Ray's daemons run on the trainer core; on a shared machine the rest is other users' load)"
            )
    per_seed = lambda m, k: ", ".join(f"{r[k]:.3f}" for r in runs[m])  # noqa: E731
    # SIMULATED: the exact expected reward of the final weights; noise = seeds only
    if "final_policy_reward" in x:
        k = "final_policy_reward"
        lo, hi = min(r[k] for r in runs["sync"]), max(r[k] for r in runs["sync"])
        verdict = "within" if lo - 1e-9 <= x[k] <= hi + 1e-9 else "OUTSIDE"
        print(
            f"{k}: sync {mean['sync'][k]:.3f} [{per_seed('sync', k)}] vs async {x[k]:.3f} [{per_seed('async', k)}] "
            f"(per seed): async mean {verdict} the sync seed range"
        )
    else:  # REAL: mean rollout reward over the run; noise from the step-to-step spread of each run
        se = {
            m: statistics.fmean(r["reward_se"] ** 2 for r in runs[m]) ** 0.5 / len(runs[m]) ** 0.5
            for m in ETAS
        }
        diff, band = (
            x["reward_mean"] - mean["sync"]["reward_mean"],
            2 * (se["sync"] ** 2 + se["async"] ** 2) ** 0.5,
        )
        print(
            f"reward over the run: sync {mean['sync']['reward_mean']:.3f} [{per_seed('sync', 'reward_mean')}] vs "
            f"async {x['reward_mean']:.3f} [{per_seed('async', 'reward_mean')}] (per seed): difference "
            f"{diff:+.3f}, noise +-{band:.3f} (2 standard errors of the step means): "
            + ("within the noise" if abs(diff) <= band else "LARGER than the noise")
        )
    return {"sync": mean["sync"], "async": mean["async"], "ratio": ratio}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["real", "simulated"], default="real")
    p.add_argument("--steps", type=int, help="trainer steps per run (real: 8, simulated: 20)")
    p.add_argument("--batch-size", type=int, help="groups per step (real: 4, simulated: 8)")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="max groups in flight, the same at eta=0 and eta=4 (default: real mode, --batch-size x the ratio of "
        "rl.max_concurrent_rollouts to rl.batch_size in --config, 8/4 in the CPU default; simulated, --batch-size)",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2], help="one run per seed and mode; means shown"
    )
    p.add_argument("--p-long", type=float, default=0.05, help="probability of a 40+ turn draw (long tail)")
    p.add_argument("--long-min", type=int, default=40, help="turns of the shortest long draw")
    p.add_argument("--output", help="write the summary and per-step curves as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--worker-logs", action="store_true", help="show the rollout workers' log lines")
    g = p.add_argument_group("real mode")
    g.add_argument(
        "--model", help="initial policy (HF dir, e.g. an SFT warm start); default: a random tiny model"
    )
    g.add_argument(
        "--train", help="training questions JSONL (default: the mirror's ASearcher-Base-35k.jsonl)"
    )
    g.add_argument("--config", default=str(REPO / "configs/default.yaml"), help="agent/rl/engine settings")
    g.add_argument("--mirror", default=None, help="data mirror (default: $ASEARCHER_MIRROR)")
    g.add_argument("--index", default=str(REPO / "results/index/bm25"), help="BM25 index (built if missing)")
    p.add_argument(
        "--questions", type=int, help="first N questions (real: all of --train, else 2000; simulated: 200)"
    )
    g.add_argument("--turn-ms", type=float, default=300.0, help="injected tool latency per drawn turn")
    g.add_argument("--hidden-size", type=int, help="random model: hidden size (tiny default 128)")
    g.add_argument("--layers", type=int, help="random model: layers (tiny default 2)")
    g.add_argument(
        "--dynamic-filtering",
        choices=["auto", "on", "off"],
        default="auto",
        help="auto: on with --model, off for the random model (its groups all score the same)",
    )
    g.add_argument(
        "--prefix-cache-tokens",
        type=int,
        help="the engine's prefix cache (0 = off; default: engine.prefix_cache_tokens of --config)",
    )
    g.add_argument("--no-pin", action="store_true", help="do not give trainer and generation separate cores")
    s = p.add_argument_group("simulated mode")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--token-delay", type=float, default=0.004, help="simulated decode seconds per token")
    s.add_argument("--tool-latency", type=float, default=0.03, help="simulated seconds per search")
    s.add_argument("--train-time", type=float, default=0.3, help="simulated trainer seconds per step")
    s.add_argument("--lr", type=float, default=0.3)
    a = p.parse_args()
    real = a.mode == "real"
    a.steps = a.steps or (8 if real else 20)
    a.batch_size = a.batch_size or (4 if real else 8)
    if a.questions is None:
        a.questions = 200 if not real else None if a.train else 2000
    if a.model and not a.train:
        sys.exit("--model needs --train: the questions it was warm-started for (e.g. its answerable.jsonl)")

    import contextlib

    import ray

    from asearcher.utils.ray_start import ensure_ray

    env: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if real:
            cpus = sorted(os.sched_getaffinity(0))
            pin = not a.no_pin and len(cpus) >= 2
            env.update(real_setup(a, stack))
            if a.prefix_cache_tokens is None:
                a.prefix_cache_tokens = env["cfg"].engine.prefix_cache_tokens
            if not a.concurrency:  # the config's rollout capacity relative to its batch
                rl_cfg = env["cfg"].rl
                a.concurrency = max(
                    1, round(a.batch_size * rl_cfg.max_concurrent_rollouts / rl_cfg.batch_size)
                )
            env["gen_cpus"] = {cpus[1]} if pin else None
            env["cores"] = (cpus[0], cpus[1]) if pin else None
            env["server_pids"] = [env["server"].process.pid]
            # trainer + driver (and the Ray daemons started next) on one core, the rollout side on the other
            if pin:
                pin_process(os.getpid(), {cpus[0]})
                for pid in env["server_pids"]:
                    pin_process(pid, {cpus[1]})
        # worker logs off by default: shutting a run down aborts its in-flight trajectories, each logged as failed
        ensure_ray(log_to_driver=a.worker_logs)
        stack.callback(ray.shutdown)
        run = run_real if real else run_simulated
        # ABBA order (sync, async, async, sync, ...): a load that drifts during the benchmark (a shared machine)
        # then favours neither mode
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in ETAS}
        for i, seed in enumerate(a.seeds):
            for m in list(ETAS) if i % 2 == 0 else list(ETAS)[::-1]:
                runs[m].append(run(ETAS[m], a, seed, env))
    if real:
        model = (
            f"--model {a.model}"
            if env["warm"]
            else "a random-init model (reward stays ~0, so throughput only; it rarely emits a search, so the "
            "injected tool latency rarely applies)"
        )
        header = (
            f"REAL stack: {model}, ASearcher agent, BM25 retrieval server, torch trainer; tool latency INJECTED "
            f"({a.turn_ms:.0f} ms per drawn turn, p_long={a.p_long}); {a.steps} steps of {a.batch_size} groups x "
            f"{a.group_size}, at most {a.concurrency or a.batch_size} groups in flight; "
            + ("trainer and generation on separate cores" if env["gen_cpus"] else "cores shared")
            + f"; engine prefix cache {a.prefix_cache_tokens} tokens"
        )
    else:
        header = (
            "SIMULATED workload (asearcher.rl.simulated): a 6x6 logits-table policy, decode a sleep of "
            f"{a.token_delay * 1000:.0f} ms per token, a search a sleep of {a.tool_latency * 1000:.0f} ms, long-tailed "
            f"turn counts (p_long={a.p_long}), trainer compute padded to {a.train_time:.2f} s per step; real Ray "
            f"workers ({a.workers}), controller and weight sync; {a.steps} steps of {a.batch_size} groups x "
            f"{a.group_size}, at most {a.concurrency or a.batch_size} groups in flight"
        )
    summary = report(a, runs, header)
    if a.output:
        settings = {k: v for k, v in vars(a).items() if isinstance(v, (int, float, str, list, type(None)))}
        Path(a.output).write_text(
            json.dumps({"mode": a.mode, "settings": settings, "summary": summary, "runs": runs}, indent=1)
        )
        print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
