"""Test doubles for the RL system. The doubles themselves live in the package (asearcher.rl.simulated, shared with
`benchmarks/async_vs_sync.py --mode simulated`); this module re-exports them and adds the test-only plug-ins and
helpers (CLI factories, question files, a controller run)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from asearcher.rl.simulated import (  # noqa: F401  (re-exported for the tests)
    V,
    ScriptedAgent,
    SimFactory,
    SleepTools,
    TableEngine,
    TableTrainer,
    draw_turns,
    score,
    target_token,
)


# ---- plug-ins for `asearcher train --rollout-factory/--trainer-factory` -------------------------------
def cli_rollout_factory(cfg: Any, model_dir: str, retrieval_url: str | None) -> SimFactory:
    # the resume test slows decoding down (SIM_TOKEN_DELAY) so it can kill the run between checkpoints
    return SimFactory(
        {"kind": "fixed", "turns": 2}, token_delay_s=float(os.environ.get("SIM_TOKEN_DELAY", "0.002"))
    )


def cli_trainer(model_path: str, cfg: Any, device: str = "cpu", seed: int = 0) -> TableTrainer:
    return TableTrainer(model_path, cfg, device=device, seed=seed)


def write_questions(path: Path, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"qid": f"q{i}", "question": f"question {i}?", "answer": [f"a{i}"]}) + "\n"
            for i in range(n)
        )
    )
    return path


def run_sim_controller(
    cfg: Any, factory: SimFactory, rows: list[dict], out: Path, steps: int, *, resume: bool, seed: int = 1
) -> tuple[Any, dict | None]:
    """The real Controller over `rows` with a TableTrainer and `factory`'s Ray workers (Ray must be up), writing to
    `out`; with `resume`, from the newest checkpoint under out/checkpoints. Returns (controller, resumed state)."""
    from asearcher.rl.system.checkpoint import latest_checkpoint, load_checkpoint
    from asearcher.rl.system.controller import Controller
    from asearcher.rl.system.dataset import QuestionStream
    from asearcher.rl.system.rollout import spawn_worker

    trainer = TableTrainer(seed=seed)
    stream = QuestionStream(rows, seed=seed)
    state = None
    if resume:
        state = load_checkpoint(latest_checkpoint(out / "checkpoints"), trainer)
        stream.load_state(state["stream"])
    ctl = Controller(
        cfg=cfg,
        trainer=trainer,
        stream=stream,
        output_dir=out,
        resume_state=state,
        spawn_worker=lambda i: spawn_worker(factory, i, cfg.group_size, cfg.temperature, seed),
        progress=False,
    )

    async def main() -> None:
        try:
            await ctl.run(steps)
        finally:
            await ctl.shutdown()

    asyncio.run(main())
    return ctl, state
