"""Asynchronous (eta=4) vs synchronous (eta=0) RL on the same long-tailed agentic workload, side by side.

REAL in this benchmark: Ray rollout-worker actors, the controller loop, staleness admission control, dynamic
filtering, object-store weight sync with interruptible generation and per-token versions, and a torch
policy-gradient trainer (Adam) behind the Trainer API.
SIMULATED: the policy is a 6x6 logits table (not an LLM); decode time is a sleep per token; tool latency is
a sleep per search; the number of turns per trajectory is drawn from a long-tailed distribution like the
paper's (most trajectories a few turns, a few 40+); trainer compute is padded to a fixed time per step.
Both runs get the same rollout capacity (max_concurrent_rollouts groups in flight), workers and steps.

  python benchmarks/async_vs_sync.py            # ~2 min on 2 CPU cores
  python benchmarks/async_vs_sync.py --steps 30 --token-delay 0.005
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ["PYTHONPATH"] = (
    f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # workers import the doubles
)

import ray  # noqa: E402

from asearcher.config import RLConfig  # noqa: E402
from asearcher.rl.system.controller import Controller  # noqa: E402
from asearcher.rl.system.dataset import QuestionStream  # noqa: E402
from asearcher.rl.system.rollout import spawn_worker  # noqa: E402
import torch  # noqa: E402

from tests.rl.doubles import SimFactory, TableTrainer, target_token  # noqa: E402


def policy_reward(trainer: TableTrainer, targets: list[int]) -> float:
    """Exact expected reward of the current weights: P(last token == target), averaged over the questions."""
    probs = torch.softmax(trainer.logits.detach(), dim=-1)
    return sum(float(probs[t, t]) for t in targets) / len(targets)


def run_one(eta: int, a: argparse.Namespace, seed: int, steps: int, stop_at: float | None = None) -> dict:
    """Train `steps` steps; the row at step a.steps is the side-by-side comparison, the curve gives time-to-reward."""
    cfg = RLConfig(
        steps=steps,
        batch_size=a.batch_size,
        group_size=a.group_size,
        max_head_offpolicyness=eta,
        max_concurrent_rollouts=a.concurrency or a.batch_size,
        rollout_workers=a.workers,
        checkpoint_every=10**6,
    )
    turns = {"kind": "tail", "p_long": a.p_long, "long_min": 40, "alpha": 2.0, "short_mean": 2.0}
    factory = SimFactory(turns, token_delay_s=a.token_delay, tool_latency_s=a.tool_latency, tokens_per_call=4)
    trainer = TableTrainer(seed=seed, lr=a.lr, train_delay_s=a.train_time)
    rows = [{"qid": f"q{i}", "question": f"question {i}", "answers": ["x"]} for i in range(a.questions)]
    targets = [target_token(r["qid"]) for r in rows]
    curve: list[tuple[float, float, float]] = []  # (wall_s, policy reward, generated trajectories) per step

    def after_step(ctl: Controller, step: int) -> None:
        curve.append(
            (
                ctl.step_log[-1]["wall_s"],
                policy_reward(trainer, targets),
                ctl.counters["groups_admitted"] * cfg.group_size,
            )
        )
        if stop_at is not None and step >= a.steps and curve[-1][1] >= stop_at:
            ctl.request_stop()  # reached the reward the sync run got: enough for time-to-reward

    ctl = Controller(
        cfg=cfg,
        trainer=trainer,
        stream=QuestionStream(rows, seed=seed),
        spawn_worker=lambda i: spawn_worker(factory, i, cfg.group_size, cfg.temperature, seed),
        after_step=after_step,
        progress=True,
    )

    async def main():
        try:
            await ctl.run()
        finally:
            await ctl.shutdown()

    asyncio.run(main())
    n = a.steps
    log = ctl.step_log[:n]
    wall, reward, n_traj = curve[n - 1]  # wall time of the training loop itself (workers already up)
    k = max(1, n // 3)
    return {
        "wall_s": wall,
        "traj_per_s": n_traj / wall,
        "trained_traj_per_s": sum(r["n_trajectories"] for r in log) / wall,
        "steps_per_s": n / wall,
        "trainer_idle_frac": log[-1]["trainer_idle_frac"],
        "final_policy_reward": reward,
        "reward_last_third": sum(r["reward_mean"] for r in log[-k:]) / k,
        "turns_max": max(r["turns_max"] for r in log),
        "token_staleness_mean": sum(r["token_staleness_mean"] for r in log) / len(log),
        "groups_filtered": log[-1]["groups_filtered_total"],
        "curve": curve,
    }


def time_to(curve: list[tuple[float, float, float]], level: float) -> float | None:
    return next((w for w, r, _ in curve if r >= level), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=0, help="max groups in flight (default: batch size)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--p-long", type=float, default=0.04, help="probability of a 40+ turn trajectory")
    p.add_argument("--token-delay", type=float, default=0.004, help="simulated decode seconds per token")
    p.add_argument("--tool-latency", type=float, default=0.03, help="simulated seconds per search")
    p.add_argument("--train-time", type=float, default=0.3, help="simulated trainer seconds per step")
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[1, 2], help="one run per seed and mode; means shown"
    )
    a = p.parse_args()
    ray.init(include_dashboard=False, logging_level="ERROR")
    try:
        runs = {0: [run_one(0, a, seed, a.steps) for seed in a.seeds]}
        level = min(r["final_policy_reward"] for r in runs[0])
        # async may run past a.steps (up to 2x) until it reaches the sync reward, for time-to-reward
        runs[4] = [run_one(4, a, seed, 2 * a.steps, stop_at=level) for seed in a.seeds]
    finally:
        ray.shutdown()
    print(__doc__.split("\n\n  python")[0])
    print()
    keys = [
        "wall_s",
        "traj_per_s",
        "trained_traj_per_s",
        "steps_per_s",
        "trainer_idle_frac",
        "final_policy_reward",
        "reward_last_third",
        "turns_max",
        "token_staleness_mean",
        "groups_filtered",
    ]
    mean = lambda rs: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0] if k != "curve"}  # noqa: E731
    sync, asyn = mean(runs[0]), mean(runs[4])
    print(f"means over seeds {a.seeds}")
    print(f"{'metric':<24}{'sync (eta=0)':>14}{'async (eta=4)':>15}{'async/sync':>12}")
    for k in keys:
        s, x = sync[k], asyn[k]
        ratio = f"{x / s:.2f}x" if s else "-"
        print(f"{k:<24}{s:>14.3f}{x:>15.3f}{ratio:>12}")
    speed = asyn["steps_per_s"] / sync["steps_per_s"]
    print(f"\ntraining throughput ratio (steps/s): {speed:.2f}x (target >= 2.5x)")
    per_seed = lambda eta: ", ".join(f"{r['final_policy_reward']:.3f}" for r in runs[eta])  # noqa: E731
    print(
        f"reward reached after {a.steps} steps (exact expected reward of the final weights): "
        f"sync {sync['final_policy_reward']:.3f} [{per_seed(0)}] vs async {asyn['final_policy_reward']:.3f} "
        f"[{per_seed(4)}] (per-seed values in brackets show the run-to-run noise)"
    )
    # Equal reward: the reward the synchronous run reached (its worst seed) and how long each mode needs for it.
    t_sync = [time_to(r["curve"], level) for r in runs[0]]
    t_async = [time_to(r["curve"], level) for r in runs[4]]
    if all(t is not None for t in t_async):
        ts, ta = sum(t_sync) / len(t_sync), sum(t_async) / len(t_async)
        print(
            f"time to reach reward {level:.3f} (the sync run's final reward, worst seed): sync {ts:.1f}s, "
            f"async {ta:.1f}s -> {ts / ta:.2f}x faster at equal reward"
        )
    else:
        print(f"async did not reach the sync reward {level:.3f} within {2 * a.steps} steps")
    print(
        "reward_last_third averages the rewards of the trained samples, which under eta=4 come from policies "
        f"~{asyn['token_staleness_mean']:.1f} versions older than the step that trains on them."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
