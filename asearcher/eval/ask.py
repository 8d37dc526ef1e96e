"""Ask one question: run any agent with any engine on local or web tools, printing the trajectory as it goes.

  asearcher ask "Who was the first president of the City Bank of New York?" \\
      [--agent asearcher|asearcher-reasoning|search-r1|direct] [--model NAME-or-DIR] [--config F] [--answer GOLD]

Each model call is printed as it returns (its purpose and its text), each search with its results, each page
read with its length and first lines, a failed tool call with its error, and at the end the answer, how the
trajectory finished and, with --answer, its F1 / EM against the gold answer(s). The agent runs with evaluation's
settings (the `agent` section with `eval.agent` on top, as `asearcher eval`), the sampling of `eval` (temperature,
top_p, eval.seed unless --seed).

--model: a name under the config's `models:`, a model directory (loaded with the `engine` section's settings),
or nothing for the `engine` section itself. Tools: `tools.backend` of the config. The local tools need a retrieval
server ($ASEARCHER_RETRIEVAL_URL, set by `asearcher with-retrieval`); the web tools use tools.web (search API,
reader, URL guard, record/replay).

  asearcher with-retrieval --index results/index/bm25 --pages .../wiki_webpages.jsonl -- \\
      asearcher ask "Where was Citibank founded?" --model results/cpu-default/sft/model --config configs/default.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO, get_args

from asearcher.config import AgentConfig, Config, EngineConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.llm.engine import SamplingParams

QID = "ask"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the question ('-' reads it from stdin)")
    p.add_argument(
        "--agent",
        metavar="KIND",
        help=f"agent kind: {', '.join(get_args(AgentConfig.model_fields['kind'].annotation))} (default: agent.kind)",
    )
    p.add_argument(
        "--model",
        help="a key of the config's `models`, a model directory, or (default) the config's `engine` section",
    )
    p.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="GOLD",
        help="a gold answer: score the prediction (repeatable)",
    )
    p.add_argument("--seed", type=int, help="sampling seed (default: eval.seed)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: eval.temperature)")
    p.add_argument(
        "--record-dir",
        help="web tools: the recording directory of tools.web.record (default: tools.web.record_dir)",
    )
    p.add_argument("--trajectory", metavar="FILE", help="also write the whole trajectory as JSON to FILE")
    p.add_argument(
        "--max-chars",
        type=int,
        default=400,
        help="print at most this many characters of each model output, result and page (0: all; default: 400)",
    )


def resolve_ask_engine(cfg: Config, model: str | None) -> tuple[str, EngineConfig]:
    """(label, engine config) for --model: a `models` key, a model directory, or the `engine` section."""
    if model is None:
        return cfg.engine.model, cfg.engine
    if model in cfg.models:
        return model, cfg.models[model]
    if Path(model).is_dir():
        kind = (
            "transformers" if cfg.engine.kind == "openai" else cfg.engine.kind
        )  # local weights: a local engine
        return model, cfg.engine.model_copy(update={"model": model, "kind": kind})
    known = ", ".join(sorted(cfg.models)) or "none in this config"
    raise UserFacingError(
        f"--model {model!r} is neither a key of the config's `models` ({known}) nor a model directory; "
        "leave --model out to use the config's `engine` section"
    )


def clip(text: str, limit: int) -> str:
    text = text.strip()
    if limit <= 0 or len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" ... [{len(text) - limit} more chars]"


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) if text else prefix.rstrip()


class TrajectoryPrinter:
    """The agent's on_event observer: prints each LLM call and tool call as it is recorded."""

    def __init__(self, out: TextIO | None = None, max_chars: int = 400):
        self.out = out  # None: sys.stdout at the time of each print
        self.max_chars = max_chars
        self.turn = 0

    def emit(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def __call__(self, traj: Any, event: Any) -> None:
        if event.type == "llm":
            self.turn += 1
            took = event.t_end - event.t_start
            self.emit(
                f"[{self.turn}] {event.purpose}: {len(event.output_ids)} tokens, {event.finish_reason}, {took:.1f}s"
            )
            self.emit(indent(clip(event.output_text, self.max_chars)))
        elif event.tool == "search":
            self.search(event)
        else:
            self.access(event)

    def search(self, event: Any) -> None:
        if not event.ok:
            self.emit(f"  search {event.argument!r} failed: {event.error}")
            return
        hits = event.result or []
        self.emit(f"  search {event.argument!r}: {len(hits)} result{'s' * (len(hits) != 1)}")
        for i, hit in enumerate(hits, start=1):
            self.emit(f"    {i}. {hit['url']}")
            self.emit(indent(clip(hit["contents"], self.max_chars // 2 if self.max_chars else 0), "       "))

    def access(self, event: Any) -> None:
        if not event.ok:
            self.emit(f"  access {event.argument} failed: {event.error}")
        elif event.result is None:
            self.emit(f"  access {event.argument}: no such page")
        else:
            self.emit(f"  access {event.argument}: {len(event.result)} chars")
            self.emit(indent(clip(event.result, self.max_chars), "    | "))

    def finish(self, traj: Any, seconds: float, scores: dict[str, float] | None) -> None:
        st = traj.stats()
        self.emit(
            f"answer: {traj.prediction!r} (finish: {traj.finish}, {st['turns']} LLM calls, {st['searches']} searches, "
            f"{st['accesses']} page reads, {seconds:.1f}s)"
        )
        if traj.error:
            self.emit(f"error: {traj.error}")
        if scores is not None:
            self.emit("scores: " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))


async def ask(args: argparse.Namespace, cfg: Config, out: TextIO | None = None) -> Any:
    """Run one trajectory for args.question, printing it to `out` (default: stdout); return the Trajectory."""
    from asearcher.agent import make_agent
    from asearcher.eval.aggregate import seeds_for
    from asearcher.eval.metrics import METRICS
    from asearcher.eval.run import eval_agent_config, make_tools
    from asearcher.llm.factory import make_engine

    label, ec = resolve_ask_engine(cfg, args.model)
    agent_cfg = eval_agent_config(cfg)
    tools = make_tools(cfg, args.record_dir)  # first: a missing retrieval server is the most common mistake
    engine = None
    try:
        engine = make_engine(ec)
        agent = make_agent(agent_cfg, engine.tokenizer)
        printer = TrajectoryPrinter(out, args.max_chars)
        agent.on_event = printer
        seed = args.seed if args.seed is not None else seeds_for(cfg.eval.seed, 1)[0]
        temperature = args.temperature if args.temperature is not None else cfg.eval.temperature
        sampling = SamplingParams(
            max_new_tokens=agent_cfg.max_new_tokens, temperature=temperature, top_p=cfg.eval.top_p, seed=seed
        )
        printer.emit(f"question: {args.question}")
        printer.emit(
            f"agent: {agent.name}   model: {label} ({ec.kind})   tools: {getattr(tools, 'name', type(tools).__name__)}"
            f"   seed: {seed}"
        )
        t0 = time.perf_counter()
        traj = await agent.run(
            qid=QID,
            question=args.question,
            answers=list(args.answer),
            engine=engine,
            tools=tools,
            sampling=sampling,
        )
        scores = None
        if args.answer:
            scores = {m: float(METRICS[m](traj.prediction, list(args.answer))) for m in ("f1", "em")}
        printer.finish(traj, time.perf_counter() - t0, scores)
        return traj
    finally:
        if engine is not None:
            await engine.aclose()
        await tools.aclose()


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.agent is not None:
        overrides.append(f"agent.kind={args.agent}")
    cfg = load_config(args.config, overrides)
    if args.question == "-":
        args.question = sys.stdin.read()
    args.question = args.question.strip()
    if not args.question:
        raise UserFacingError("the question is empty")
    traj = asyncio.run(ask(args, cfg))
    if args.trajectory:
        from asearcher.eval.outputs import trajectory_dict
        from asearcher.utils.secrets import redact_obj

        Path(args.trajectory).write_text(
            json.dumps(redact_obj(trajectory_dict(traj)), ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return 1 if traj.finish == "error" else 0
