"""Evaluate a search agent on one benchmark: k samples per question, string metrics (+ optional LLM judge),
Avg@k / Pass@k, written under results/eval/<model>/<setting>/<benchmark>/. Resumable: rerun the same command
after a crash and only the unfinished (question, sample) pairs run.

The retrieval server must be running; its address comes from $ASEARCHER_RETRIEVAL_URL, which
`asearcher with-retrieval` sets. Typical use:

  asearcher with-retrieval --index results/index/bm25 --corpus results/releases/ASearcher-Local-Knowledge/wiki_corpus.jsonl \\
      --pages results/releases/ASearcher-Local-Knowledge/wiki_webpages.jsonl --config configs/default.yaml -- \\
      asearcher eval --config configs/default.yaml --model tiny --benchmark Bamboogle --max-samples 20

The agent runs with evaluation's own settings: the `agent` section with `eval.agent` on top, whose null keys take
upstream's evaluation protocol for agent.kind (asearcher: the valid-question prompt, 64 turns, 4096 tokens a call;
asearcher-reasoning: 128 turns, answer forced after 32 acts; search-r1: 10 turns, 4096 tokens a call).

With `tools.backend: web` the agents search and read through the web tools (asearcher.tools.web): a
Serper-compatible search API and a page reader, or the local web of the retrieval server (tools.web.search_url:
local). Unless tools.web.record is off, they record every response into <output>/tool-recordings/ (or
tools.web.record_dir), so the run can be replayed without the network (tools.web.record: replay, with record_dir
pointing at those recordings). The protocol card names the tools (search API, reader), the recording, the judge
and, for benchmarks with several editions (xBench-DeepSearch), the edition of the file the run read.

A benchmark whose questions a run produces (train-questions: the RL training questions, in-distribution) reads
them from --questions FILE. The direct-generation agent (agent.kind: direct) calls no tool: it runs without a
retrieval server or web keys.

Outputs: samples.jsonl (one row per question x sample), trajectories.jsonl, aggregate.json (metrics, stats,
errors and the protocol card), protocol.json and config.yaml (the merged config of the run). For sealed
benchmarks (xBench) only ids, hashes and scores are written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from asearcher.config import AgentConfig, Config, EngineConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.llm.engine import SamplingParams

from .outputs import EvalPaths

log = logging.getLogger(__name__)

RETRIEVAL_ENV = "ASEARCHER_RETRIEVAL_URL"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="model name: a key of the config's `models` (or any label when `models` is empty: then the "
        "config's `engine` is evaluated under that name)",
    )
    p.add_argument(
        "--benchmark", required=True, help="benchmark name or alias (see asearcher/eval/benchmarks/)"
    )
    p.add_argument(
        "--setting",
        help="name of the agent setting in the output path (default: <agent.kind>-<retrieval.backend>-top<topk>)",
    )
    p.add_argument(
        "--releases",
        help="directory holding ASearcher-test-data/ (default: <results_dir>/releases, else the data mirror)",
    )
    p.add_argument(
        "--output", help="output directory (default: <results_dir>/eval/<model>/<setting>/<benchmark>)"
    )
    p.add_argument("--max-samples", type=int, help="evaluate only the first N questions (eval.max_samples)")
    p.add_argument(
        "--questions",
        metavar="FILE",
        help="the questions file of a benchmark that a run produces (train-questions: the RL training questions, "
        "JSONL rows with question and answer, as the train-data release or the SFT output's answerable.jsonl)",
    )
    p.add_argument(
        "--retry-errors", action="store_true", help="on resume, rerun samples that finished with an error"
    )


def default_setting(cfg: Config) -> str:
    """The Snakefile's setting name (workflow/rules/common.smk: SETTING), naming the search backend used."""
    from asearcher.tools.factory import setting_label

    return setting_label(cfg)


#: how a recipe marks a model id the user must supply (e.g. a baseline whose checkpoint the paper does not name)
REQUIRED_MODEL = "<required"


def resolve_engine_config(cfg: Config, name: str) -> EngineConfig:
    if name in cfg.models:
        ec = cfg.models[name]
        if ec.model.startswith(REQUIRED_MODEL):
            raise UserFacingError(
                f"models.{name}.model is not set: the recipe says {ec.model!r}. Set it to the checkpoint's hub id "
                f"or a local directory: edit the recipe, pass `--set models.{name}.model=ORG/NAME` to asearcher, or "
                f"give Snakemake a second --configfile with `models: {{{name}: {{model: ORG/NAME}}}}`"
            )
        return ec
    if not cfg.models:
        return cfg.engine
    raise UserFacingError(
        f"--model {name!r} is not in the config's `models` ({', '.join(sorted(cfg.models))}); "
        "add it under `models:` or use one of those names"
    )


def resolve_test_data(cfg: Config, releases: str | None, folder: str) -> Path:
    """The ASearcher-test-data directory: under --releases, <results_dir>/releases, or the data mirror."""
    candidates: list[Path] = []
    if releases:
        candidates = [Path(releases) / "ASearcher-test-data", Path(releases)]
    else:
        candidates.append(Path(cfg.results_dir) / "releases" / "ASearcher-test-data")
        mirror = cfg.mirror_dir()
        if mirror is not None:
            candidates.append(mirror / "ASearcher-test-data")
    for c in candidates:
        if (c / folder).is_dir():
            return c
    tried = (
        ", ".join(str(c) for c in candidates) or "(none: no --releases, no data.mirror, no $ASEARCHER_MIRROR)"
    )
    raise UserFacingError(
        f"benchmark folder {folder!r} not found; looked in {tried}. Fetch the test data with "
        "`asearcher fetch-data` or pass --releases DIR (the directory holding ASearcher-test-data/)."
    )


#: where a web evaluation records its tool responses, inside its output directory (unless tools.web.record_dir)
RECORDINGS = "tool-recordings"


def _web_cfg(cfg: Config) -> Any:
    return getattr(cfg.tools, "web", None)


def web_record_dir(cfg: Config, out_dir: str | Path) -> Path | None:
    """The recording directory a web evaluation passes to its tools: <out_dir>/tool-recordings, so a run's
    recordings travel with its results; None for the local tools, with tools.web.record 'off', or when
    tools.web.record_dir names one explicitly (e.g. to replay another run's recordings)."""
    web = _web_cfg(cfg)
    if cfg.tools.backend != "web" or web is None:
        return None
    if getattr(web, "record", "off") == "off" or getattr(web, "record_dir", None):
        return None
    return Path(out_dir) / RECORDINGS


def tools_card(cfg: Config) -> dict[str, Any]:
    """What the protocol card says about the tools, compared on resume: the backend, the search API and the page
    reader (the web tools' own description, with its run-specific parts, goes to `tools_details`)."""
    if uses_no_tools(cfg):
        return {"backend": "none"}
    if cfg.tools.backend != "web":
        return {"backend": "local", "search": f"retrieval server /retrieve ({cfg.retrieval.backend})"}
    web = _web_cfg(cfg)
    search_url = getattr(web, "search_url", None)
    reader = getattr(web, "reader", None)
    card: dict[str, Any] = {
        "backend": "web",
        "search": {
            "api": "serper-compatible",
            "url": "local web: the retrieval server's /search" if search_url == "local" else search_url,
        },
        "reader": {"kind": reader},
    }
    if reader == "jina":
        card["reader"]["url"] = getattr(web, "reader_url", None)
    return card


def uses_no_tools(cfg: Config) -> bool:
    """The agent calls no tool (direct generation): no retrieval server, no web keys, NoTools."""
    from asearcher.config.agent import TOOL_FREE_KINDS

    return cfg.agent.kind in TOOL_FREE_KINDS


def make_tools(cfg: Config, record_dir: str | Path | None = None) -> Any:
    """The configured tools: the web tools (recording into record_dir when given), or LocalTools over the
    retrieval server that RetrievalClient.discover() finds ($ASEARCHER_RETRIEVAL_URL, else the address files in
    $RAG_SERVER_ADDR_DIR)."""
    from asearcher.retrieval.client import NoRetrievalServerError, RetrievalClient
    from asearcher.tools.factory import make_tools as tool_backend

    if uses_no_tools(cfg):
        from asearcher.agent.direct_agent import NoTools

        return NoTools()
    if cfg.tools.backend == "web":
        return tool_backend(cfg, record_dir=record_dir)
    try:
        client = RetrievalClient.discover()
    except NoRetrievalServerError as e:
        raise UserFacingError(
            f"no retrieval server address ({e}). Run the evaluation under `asearcher with-retrieval --index DIR "
            "--corpus FILE --pages FILE --config C -- asearcher eval ...`, which starts a server and sets "
            f"${RETRIEVAL_ENV}; or start `asearcher serve-retrieval` yourself and export {RETRIEVAL_ENV}=http://HOST:PORT"
        ) from None
    return tool_backend(cfg, client=client)


def retriever_info(cfg: Config) -> dict[str, Any]:
    if uses_no_tools(cfg):
        return {"backend": "none"}
    r = cfg.retrieval
    web = _web_cfg(cfg)
    if cfg.tools.backend == "web" and getattr(web, "search_url", None) != "local":
        return {"backend": "web", "topk": cfg.agent.topk}  # no local index: the search API (card: tools)
    info: dict[str, Any] = {"backend": r.backend, "topk": cfg.agent.topk}
    if r.backend == "bm25":
        info.update(bm25_k1=r.bm25_k1, bm25_b=r.bm25_b)
    else:
        info.update(encoder=r.dense.model)
    return info


def eval_agent_config(cfg: Config) -> AgentConfig:
    """The agent settings evaluation runs: `agent` with `eval.agent` on top (upstream's eval protocol by default)."""
    try:
        agent_cfg = cfg.eval.agent.apply(cfg.agent)
    except ValidationError as e:
        raise UserFacingError(f"eval.agent applied to agent: {e}") from None
    if agent_cfg.max_new_tokens >= agent_cfg.max_context_tokens and agent_budget_mode(agent_cfg) == "fixed":
        raise UserFacingError(
            f"evaluation would give every LLM call {agent_cfg.max_new_tokens} new tokens "
            f"(eval.agent.max_new_tokens, else upstream's value for agent.kind={agent_cfg.kind!r}) inside a "
            f"context of {agent_cfg.max_context_tokens} (agent.max_context_tokens): no call fits. Set "
            "eval.agent.max_new_tokens below the context (or eval.agent.max_context_tokens to the model's context)."
        )
    return agent_cfg


def agent_budget_mode(agent_cfg: AgentConfig) -> str:
    """'fixed' when a call needs its whole max_new_tokens to fit, 'context' when it gets what the context leaves."""
    from asearcher.agent.registry import agent_class

    mode = getattr(agent_cfg, "call_budget", "fixed")
    if mode == "auto":
        mode = getattr(agent_class(agent_cfg.kind), "upstream_call_budget", "fixed")
    return str(mode)


def eval_agent_info(cfg: Config) -> dict[str, Any]:
    """What the protocol card says about where the eval agent settings came from."""
    applied = cfg.eval.agent.overrides(cfg.agent.kind)
    return {
        "defaults": cfg.eval.agent.defaults,
        "overrides": applied,
        "training_values": {k: getattr(cfg.agent, k) for k in applied},
    }


def engine_info(ec: EngineConfig) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": ec.kind, "model": ec.model}
    if ec.kind == "openai":
        info.update(api=ec.api, base_url=ec.base_url)
    else:
        info.update(dtype=ec.dtype)
    return info


async def evaluate(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    from asearcher.eval.aggregate import seeds_for
    from asearcher.eval.judge import make_judge
    from asearcher.eval.loaders import load_benchmark, load_questions_file
    from asearcher.eval.metrics import METRICS, MODEL_METRICS, parse_metric_list
    from asearcher.eval.protocol import build_card, check_resumable
    from asearcher.eval.registry import get_benchmark
    from asearcher.eval.runner import EvalJob, run_eval
    from asearcher.utils.secrets import redact_obj

    spec = get_benchmark(args.benchmark)
    try:
        names = parse_metric_list(cfg.eval.metrics, allow_model_metrics=True)
    except ValueError as e:
        raise UserFacingError(f"eval.metrics: {e}") from None
    if "judge" in names and not cfg.eval.judge.enabled:
        raise UserFacingError(
            "eval.metrics lists 'judge' but eval.judge.enabled is false: set eval.judge.enabled=true"
        )
    metric_fns = {n: METRICS[n] for n in names if n not in MODEL_METRICS}
    if "judge" in spec.metrics and not cfg.eval.judge.enabled:
        log.warning("%s is scored with an LLM judge in the paper; eval.judge.enabled is false", spec.name)

    questions = getattr(args, "questions", None)
    if spec.source == "run":
        if not questions:
            raise UserFacingError(
                f"benchmark {spec.name}: its questions are a file of the run (e.g. the RL training questions): "
                "pass it with --questions FILE"
            )
        bench_file = Path(questions)
        rows = load_questions_file(spec, bench_file, limit=cfg.eval.max_samples)
    else:
        if questions:
            raise UserFacingError(
                f"--questions is for benchmarks whose questions a run produces (e.g. train-questions); "
                f"{spec.name} reads ASearcher-test-data (use --releases DIR)"
            )
        test_dir = resolve_test_data(cfg, args.releases, spec.folder)
        bench_file, _ = spec.resolve_file(test_dir)
        rows = load_benchmark(spec, test_dir, limit=cfg.eval.max_samples)
    if not rows:
        raise UserFacingError(f"benchmark {spec.name}: {bench_file} has no questions")

    ec = resolve_engine_config(cfg, args.model)
    agent_cfg = eval_agent_config(cfg)
    setting = args.setting or default_setting(cfg)
    if args.output:
        out_dir = Path(args.output)
    else:
        out_dir = EvalPaths.for_run(cfg.results_dir, args.model, setting, spec.name).root
    record_dir = web_record_dir(cfg, out_dir)
    tools = make_tools(cfg, record_dir)  # first: a missing retrieval server is the most common mistake

    judge = engine = None
    try:
        from asearcher.agent import make_agent
        from asearcher.llm.factory import make_engine

        engine = make_engine(ec)
        agent = make_agent(agent_cfg, engine.tokenizer)
        judge = make_judge(cfg.eval.judge) if cfg.eval.judge.enabled else None
        k = cfg.eval.k
        seeds = seeds_for(cfg.eval.seed, k)
        sampling = SamplingParams(
            max_new_tokens=agent_cfg.max_new_tokens, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p
        )
        card = build_card(
            model_name=args.model,
            engine=engine_info(ec),
            agent=agent_cfg.model_dump(mode="json"),
            eval_agent=eval_agent_info(cfg),
            prompt_hash=agent.prompt_hash,
            retriever=retriever_info(cfg),
            search_backend=getattr(tools, "name", type(tools).__name__),
            tools=tools_card(cfg),
            tools_details=tools.describe() if hasattr(tools, "describe") else None,
            editions=spec.editions,
            paper_edition=spec.paper_edition,
            in_distribution=spec.in_distribution,
            judge=cfg.eval.judge.model if judge is not None else None,
            judge_details=judge.describe() if judge is not None else None,
            temperature=cfg.eval.temperature,
            top_p=cfg.eval.top_p,
            max_new_tokens=agent_cfg.max_new_tokens,
            k=k,
            seeds=seeds,
            benchmark=spec.name,
            benchmark_file=bench_file,
            n_questions=len(rows),
            sealed=spec.sealed,
            setting=setting,
        )
        edition = card["benchmark"]
        if edition.get("comparable_with_paper") is False:
            log.warning(
                "%s: %s is edition %r, not the paper's %r: its scores are not comparable with the paper's",
                spec.name, edition["file"], edition["edition"], edition["paper_edition"],
            )  # fmt: skip
        paths = EvalPaths(out_dir)
        if paths.protocol.exists():  # refuse before touching anything in a directory of another protocol
            saved = json.loads(paths.protocol.read_text(encoding="utf-8"))
            check_resumable(saved, redact_obj(card), str(out_dir))  # protocol.json is written redacted
        cfg.dump(paths.config)
        job = EvalJob(
            benchmark=spec.name,
            rows=rows,
            k=k,
            seeds=seeds,
            sampling=sampling,
            metrics=metric_fns,
            out_dir=out_dir,
            card=card,
            concurrency=cfg.eval.concurrency,
            sealed=spec.sealed,
            judge=judge,
            retry_errors=args.retry_errors,
            progress=not args.no_progress,
        )
        return await run_eval(job, agent=agent, engine=engine, tools=tools)
    finally:
        if judge is not None:
            await judge.aclose()
        if engine is not None:
            await engine.aclose()
        await tools.aclose()


def summary(agg: dict[str, Any]) -> str:
    k = agg["k"]
    lines = [f"{agg['benchmark']}: {agg['n']} questions x {k} samples, {agg['errors']} errors"]
    for m, v in agg["metrics"].items():
        avg, pas = v[f"avg@{k}"], v[f"pass@{k}"]
        lines.append(f"  {m:<8} avg@{k} {100 * (avg or 0):5.1f}   pass@{k} {100 * (pas or 0):5.1f}")
    st = agg["stats"]
    lines.append(
        f"  turns {st['avg_turns'] or 0:.2f}  searches {st['avg_searches'] or 0:.2f}  "
        f"accesses {st['avg_accesses'] or 0:.2f}  output tokens {st['avg_output_tokens'] or 0:.0f}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.max_samples is not None:
        if args.max_samples < 1:
            raise UserFacingError(f"--max-samples must be >= 1, got {args.max_samples}")
        cfg.eval.max_samples = args.max_samples
    agg = asyncio.run(evaluate(args, cfg))
    print(summary(agg))
    return 0
