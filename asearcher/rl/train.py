"""Fully asynchronous RL on Ray (staleness-bounded), resumable.

Rollout workers (Ray actors, each with an inference engine, the agent and retrieval tools) generate groups of
trajectories continuously; the trainer (in this process) trains on each batch of `rl.batch_size` accepted
groups as soon as it is ready and pushes the new weights to the workers without stopping them. The staleness
bound `rl.max_head_offpolicyness` (eta) limits how far ahead rollouts may run; eta=0 is synchronous RL.

Outputs under --output:
  config.yaml                  the merged config of the run
  metrics.jsonl / metrics.csv  one row per training step (reward, turns, tool calls, staleness, timing, memory)
  summary.json, training.png   reward over the first vs the last quarter of the steps; the curves at a glance
  checkpoints/step_N/          resumable checkpoints (every rl.checkpoint_every steps and at the end)
  final/                       the trained model (Hugging Face format)
Re-running the same command resumes from the last checkpoint: same data order, no step lost or repeated, and
the metric rows up to that checkpoint restored from it (also when metrics.jsonl was deleted, as Snakemake does
with the outputs of a failed job). To start a run over, delete OUTPUT (`snakemake --forcerun train` alone
resumes from OUTPUT/checkpoints).

Ray: starts a local Ray instance, or connects to an existing cluster when RAY_ADDRESS is set. GPUs: right after
Ray starts, the cluster must hold every GPU the run reserves (rl.trainer_gpus + rl.rollout_workers x the engine's
GPUs), or the run stops with an error naming the numbers; then each GPU is reserved once (docs/rl-system.md).

Examples:
  asearcher train --config configs/default.yaml --model results/models/tiny \\
      --train results/releases/ASearcher-train-data/ASearcher-Base-35k.jsonl --output results/rl/tiny \\
      --retrieval-url http://127.0.0.1:8000 --set rl.steps=20 --set rl.batch_size=8 --set rl.group_size=4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from asearcher.errors import UserFacingError
from asearcher.utils.atomic import atomic_dir
from asearcher.utils.ray_start import ensure_ray

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="initial policy: model directory (or hub id)")
    p.add_argument(
        "--train",
        required=True,
        nargs="+",
        help="training questions JSONL, one or more (e.g. a release file and `asearcher synth`'s train.jsonl)",
    )
    p.add_argument(
        "--output", required=True, help="run directory (created; resumed from if it has a checkpoint)"
    )
    p.add_argument(
        "--retrieval-url",
        default=os.environ.get("ASEARCHER_RETRIEVAL_URL"),
        help="retrieval server address for the agents' tools (default: $ASEARCHER_RETRIEVAL_URL)",
    )
    p.add_argument(
        "--rollout-factory",
        metavar="MODULE:ATTR",
        help="plug-in: callable(cfg, model_dir, retrieval_url) returning a rollout factory with "
        "build(worker_index) -> RolloutComponents (custom engines/agents/tools). Default: the configured stack.",
    )
    p.add_argument(
        "--trainer-factory",
        metavar="MODULE:ATTR",
        help="plug-in: callable(model_path, rl_cfg, device=, seed=) returning a Trainer. "
        "Default: asearcher.rl.trainers.make_trainer.",
    )


def _reserve_gpus(cfg, plan):
    """Pre-flight, right after Ray starts: the cluster must hold every GPU the run will reserve (trainer ranks +
    rollout workers x their engines' GPUs, `plan`), else a UserFacingError names the numbers and keys. Then the
    rollout workers' GPUs are reserved at once (the trainer reserves its own next). Returns the Reservation or None.

    On a joined cluster (RAY_ADDRESS) nodes may still be arriving: waits up to $ASEARCHER_RAY_NODES_WAIT_S (120 s)
    for their GPUs; a local Ray has what it has."""
    from asearcher.rl.system.rollout import reserve_rollout_gpus
    from asearcher.utils.placement import NODES_WAIT_ENV, require_ray_gpus

    c = cfg.cluster
    allocation = (
        f"the config's allocation is cluster.train_nodes={c.train_nodes} x cluster.gpus_per_node="
        f"{c.gpus_per_node} = {c.train_nodes * c.gpus_per_node} GPUs"
    )
    wait_s = float(os.environ.get(NODES_WAIT_ENV, "120" if os.environ.get("RAY_ADDRESS") else "0"))
    have = require_ray_gpus(plan, allocation=allocation, wait_s=wait_s)
    log.info("GPU plan: %s; the Ray cluster has %g", plan.describe(), have)
    return reserve_rollout_gpus(plan)


def run(args: argparse.Namespace) -> int:
    from asearcher.config import load_config
    from asearcher.rl.system.checkpoint import checkpoint_metrics, latest_checkpoint, load_checkpoint
    from asearcher.rl.system.controller import Controller
    from asearcher.rl.system.dataset import QuestionStream, load_train_rows
    from asearcher.rl.system.metrics_log import MetricsLogger
    from asearcher.rl.system.rollout import DefaultRolloutFactory, spawn_worker
    from asearcher.utils.placement import plan_gpus
    from asearcher.utils.registry import load_object

    cfg = load_config(args.config, args.overrides)
    from asearcher.config.checks import require_consistent

    for warning in require_consistent(cfg, source=args.config or "config"):  # before anything starts
        log.warning("%s", warning)
    if not args.rollout_factory:  # a plug-in factory brings its own tools
        from asearcher.tools.factory import require_tools_backend

        require_tools_backend(cfg)
    rl = cfg.rl
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cfg.dump(out / "config.yaml")

    rows = load_train_rows(args.train, rl.max_questions)
    stream = QuestionStream(rows, seed=cfg.seed)

    try:
        make = load_object(args.trainer_factory) if args.trainer_factory else None
    except (ImportError, AttributeError, ValueError) as e:
        raise UserFacingError(f"--trainer-factory {args.trainer_factory!r}: {e}") from None
    if make is None:
        from asearcher.rl.trainers import make_trainer as make
    gpu_plan = plan_gpus(rl, cfg.engine)
    rollout_gpus = None
    if gpu_plan.ray_gpus:
        # Ray first, then the pre-flight, before anything reserves a GPU: a clear error, not a hang
        ensure_ray(log_to_driver=True)  # RAY_ADDRESS set: join that cluster; else a local instance
        rollout_gpus = _reserve_gpus(cfg, gpu_plan)
    device = "cuda" if rl.trainer_gpus > 0 else "cpu"
    try:
        trainer = make(args.model, rl, device=device, seed=cfg.seed)
    except BaseException:
        if rollout_gpus is not None:
            rollout_gpus.release()
        raise

    ckpt = latest_checkpoint(out / "checkpoints")
    resume_state, resume_step, restore_rows = None, None, None
    if ckpt is not None:
        restore_rows = checkpoint_metrics(ckpt)
        resume_state = load_checkpoint(ckpt, trainer)
        stream.load_state(resume_state["stream"])
        resume_step = int(resume_state["step"])
        if int(trainer.version) != int(resume_state["version"]):
            raise UserFacingError(
                f"{ckpt}: trainer version {trainer.version} != checkpoint version "
                f"{resume_state['version']}; the checkpoint is inconsistent, delete it"
            )
        log.info("resuming from %s (step %d)", ckpt, resume_step)
    if int(trainer.version) >= rl.steps and (out / "final").exists():
        print(f"{out}: already trained to step {trainer.version} (rl.steps={rl.steps}); nothing to do")
        if rollout_gpus is not None:
            rollout_gpus.release()
        return 0

    if args.rollout_factory:
        try:
            factory = load_object(args.rollout_factory)(cfg, args.model, args.retrieval_url)
        except (ImportError, AttributeError, ValueError) as e:
            raise UserFacingError(f"--rollout-factory {args.rollout_factory!r}: {e}") from None
    else:
        needs_server = cfg.tools.backend == "local" or cfg.tools.web.search_url == "local"
        if needs_server and not args.retrieval_url and not os.environ.get("RAG_SERVER_ADDR_DIR"):
            raise UserFacingError(
                "no retrieval server: pass --retrieval-url URL, or set $ASEARCHER_RETRIEVAL_URL or "
                "$RAG_SERVER_ADDR_DIR (start one with `asearcher serve-retrieval` or run under "
                "`asearcher with-retrieval`)"
            )
        engine_cfg = cfg.engine.model_copy(update={"model": args.model})
        factory = DefaultRolloutFactory(
            engine_cfg,
            cfg.agent,
            rl,
            args.retrieval_url,
            judge_cfg=cfg.eval.judge,
            tools_cfg=cfg.tools,
            record_dir=str(out / "tool_recordings"),
        )

    ensure_ray(log_to_driver=True)  # RAY_ADDRESS set: join that cluster; else a local instance

    def spawn(i: int):  # worker i owns its engine's GPUs: bundle i of the rollout reservation
        return spawn_worker(
            factory, i, rl.group_size, rl.temperature, cfg.seed,
            num_gpus=gpu_plan.worker_gpus, reservation=rollout_gpus,
        )  # fmt: skip

    metrics = MetricsLogger(out, resume_step=resume_step, restore_rows=restore_rows)
    ctl = Controller(
        cfg=rl,
        trainer=trainer,
        stream=stream,
        spawn_worker=spawn,
        output_dir=out,
        metrics=metrics,
        resume_state=resume_state,
        progress=not args.no_progress,
    )

    async def _main() -> None:
        try:
            await ctl.run()
        finally:
            await ctl.shutdown()

    try:
        asyncio.run(_main())
    finally:
        metrics.close()
    final = out / "final"
    with atomic_dir(final) as tmp:
        trainer.save_hf(str(tmp))
    close = getattr(trainer, "close", None)
    if close is not None:
        close()
    if rollout_gpus is not None:
        rollout_gpus.release()
    from asearcher.rl.system.curves import write_run_summary

    summary = write_run_summary(out, metrics.rows, title=f"{cfg.name}: {args.model}")
    print(
        f"trained {trainer.version} steps; model in {final}, metrics in {out / 'metrics.jsonl'}, "
        f"curves in {out / 'training.png'}"
    )
    if summary.get("steps"):
        print(
            f"rollout reward: {summary['reward_start']:.3f} over the first {summary['window_steps']} steps -> "
            f"{summary['reward_end']:.3f} over the last {summary['window_steps']}"
        )
    return 0
