"""Synthesize hard multi-hop QA with the prompt-based agent (paper §3.2.2), resumable, hundreds of seeds in flight.

  asearcher synth --pages wiki_webpages.jsonl --train-release DIR --output results/cpu-default/synth [--config F]

Seeds come from random pages of the local Wikipedia (with their links) and/or seed QA (synth.seeds). Two roles,
each any engine: synth.reasoner (paper: QwQ-32B) proposes, verifies and answers without tools; synth.instruct
(paper: Qwen2.5-72B-Instruct) summarises pages, extracts information points and judges answers. QA seeds without
supporting statements take them from the retrieval server ($ASEARCHER_RETRIEVAL_URL, set by
`asearcher with-retrieval`).

Outputs in --output:
  records.jsonl   one line per finished seed: question, answer, pages, statements, edit and variant history
  train.jsonl     the selected questions in the ASearcher-Base-35k layout (`asearcher train --train` reads it)
  stats.json/png  supporting facts, injections, fuzzes, no-tool accuracy (the paper's Fig. 5) and the yield
  run.json        provenance: engines, prompt hashes, settings, seeds
Rerun the same command after a crash: finished seeds are skipped, never redone or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from asearcher.config import Config, EngineConfig, load_config
from asearcher.errors import UserFacingError
from asearcher.llm.engine import SamplingParams
from asearcher.utils.jsonl import JsonlAppender, iter_jsonl, write_json, write_jsonl
from asearcher.utils.progress import progress
from asearcher.utils.secrets import redact_obj

from .records import SeedRecord, training_rows
from .roles import Role, load_prompts
from .seeds import Seed, load_qa_seeds, page_seeds, pick_qa_seeds
from .stats import compute_stats, plot_stats

log = logging.getLogger(__name__)

#: settings that change what a seed grows into: a resumed run must have the same ones
FINGERPRINT_KEYS = (
    "seeds", "max_turns", "n_direct", "direct_temperature", "direct_max_new_tokens", "max_retries", "page_max_chars",
    "max_points", "temperature", "top_p", "max_new_tokens", "instruct_max_new_tokens", "support_topk", "judge_prompt",
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="output directory (records, training file, statistics)")
    p.add_argument(
        "--pages", required=True, help="wiki_webpages.jsonl of the ASearcher-Local-Knowledge release"
    )
    p.add_argument(
        "--links", help="wikilinks.jsonl (default: synth.links_file; none: links derived from pages)"
    )
    p.add_argument(
        "--train-release",
        help="ASearcher-train-data release directory (resolves synth.qa_file given as a name)",
    )
    p.add_argument("--qa", help="seed QA file (default: synth.qa_file)")
    p.add_argument("--num-seeds", type=int, help="seeds to grow (default: synth.num_seeds)")


def resolve_qa_file(name: str, release_dir: str | None) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    if release_dir and (Path(release_dir) / name).is_file():
        return Path(release_dir) / name
    where = f" or in {release_dir}" if release_dir else " (pass --train-release to look in the release)"
    raise UserFacingError(f"synth.qa_file: {name} not found as a path{where}")


def plan_seeds(cfg: Config, graph: Any, qa_path: Path | None) -> list[Seed]:
    """The run's seeds, fixed by cfg.seed: the same list on every rerun."""
    s = cfg.synth
    rng = random.Random(cfg.seed)
    n_pages = {"pages": s.num_seeds, "qa": 0, "both": (s.num_seeds + 1) // 2}[s.seeds]
    seeds = page_seeds(graph, n_pages, rng) if n_pages else []
    if s.seeds != "pages":
        assert qa_path is not None
        seeds += pick_qa_seeds(load_qa_seeds(qa_path), s.num_seeds - n_pages, rng)
    if not seeds:
        raise UserFacingError("no seeds: the pages have no links and no seed QA was given (synth.seeds)")
    return seeds


def _role_engine_config(cfg: Config, role: str) -> EngineConfig:
    own = getattr(cfg.synth, role)
    if own is not None:
        return own
    return cfg.engine if role == "reasoner" else _role_engine_config(cfg, "reasoner")


def fingerprint(cfg: Config, prompts: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": {k: getattr(cfg.synth, k) for k in FINGERPRINT_KEYS},
        "seed": cfg.seed,
        "reasoner": _role_engine_config(cfg, "reasoner").model,
        "instruct": _role_engine_config(cfg, "instruct").model,
        "prompts": {n: p.sha256 for n, p in sorted(prompts.items())},
    }


def _check_resume(run_json: Path, fp: dict[str, Any]) -> None:
    if not run_json.exists():
        return
    old = json.loads(run_json.read_text(encoding="utf-8")).get("fingerprint")
    if old is not None and old != fp:
        diff = sorted(k for k in fp if old.get(k) != fp[k])
        raise UserFacingError(
            f"{run_json.parent} holds a synthesis run with other settings ({', '.join(diff)} differ): resuming would "
            "mix two runs; use another --output, or delete that directory to start over"
        )


def load_records(path: Path) -> dict[str, SeedRecord]:
    if not path.exists():
        return {}
    return {r["seed_id"]: SeedRecord.from_dict(r) for r in iter_jsonl(path, require=("seed_id", "qa"))}


async def synthesize(
    cfg: Config,
    output: str | Path,
    pages_path: str | Path,
    *,
    links_path: str | Path | None = None,
    qa_path: str | Path | None = None,
    reasoner_engine: Any = None,
    instruct_engine: Any = None,
    retrieval: Any = None,
) -> dict[str, Any]:
    """Grow every planned seed not finished yet; write records, training file, statistics. Returns the stats."""
    from asearcher.retrieval.stores import PageStore

    from .links import open_link_graph

    s = cfg.synth
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts()
    fp = fingerprint(cfg, prompts)
    _check_resume(out / "run.json", fp)

    pages = PageStore(pages_path, memory_max_bytes=cfg.retrieval.memory_store_max_mb << 20)
    graph = open_link_graph(pages, links_path)
    seeds = plan_seeds(cfg, graph, Path(qa_path) if qa_path else None)
    done = load_records(out / "records.jsonl")
    todo = [x for x in seeds if x.id not in done]
    own_retrieval = retrieval is None and any(x.kind == "qa" and not x.statements for x in todo)
    if own_retrieval:
        from asearcher.retrieval.client import RetrievalClient

        retrieval = RetrievalClient.discover()  # a clear error when no server is configured

    if todo:
        agent, describe, owned = _build_agent(
            cfg, fp, prompts, graph, pages, retrieval, reasoner_engine, instruct_engine
        )
        write_json(out / "run.json", {"fingerprint": fp, **describe, "planned_seeds": len(seeds)})
        provenance = {
            "reasoner": fp["reasoner"],
            "instruct": fp["instruct"],
            "prompts_sha256": fp["prompts"],
            "run_seed": cfg.seed,
        }
        try:
            errors = await _grow_all(
                agent, todo, out / "records.jsonl", provenance, s.max_in_flight, len(done)
            )
        finally:
            for x in owned:
                await x.aclose()
            if own_retrieval:
                await retrieval.aclose()
        failures = dict(agent.reasoner.failures + agent.instruct.failures)
    else:  # everything was done before: no model is loaded
        errors, failures = [], {}

    records = load_records(out / "records.jsonl")
    planned = [records[x.id] for x in seeds if x.id in records]
    write_jsonl(out / "train.jsonl", training_rows(planned, s.max_variants_per_seed))
    stats = compute_stats(planned, planned=len(seeds), max_per_seed=s.max_variants_per_seed)
    stats["errors"] = {"seeds": len(errors), "first": errors[:5]}
    stats["model_failures"] = failures
    if not stats["yield"]["selected"]:
        stats["note"] = (
            "no question was selected: see seeds.rejected_by_reason and edits_rejected_by_reason (with the CPU "
            "default's tiny model the replies are not valid JSON, so this is expected there)"
        )
    write_json(out / "stats.json", redact_obj(stats))
    plot_stats(stats, out / "stats.png")
    if errors:
        raise UserFacingError(
            f"{len(errors)} seed(s) failed with an error (first: {errors[0]}); their records were not written, so "
            "rerunning the same command retries them"
        )
    return stats


def _build_agent(
    cfg: Config,
    fp: dict[str, Any],
    prompts: dict[str, Any],
    graph: Any,
    pages: Any,
    retrieval: Any,
    reasoner_engine: Any,
    instruct_engine: Any,
) -> tuple[Any, dict[str, Any], list[Any]]:
    """The agent with both roles and the judge; engines not given are built from the config (and owned)."""
    from asearcher.eval.judge import Judge, chat_fn_for
    from asearcher.llm.factory import make_engine

    from .agent import SynthesisAgent

    s = cfg.synth
    owned = []
    if reasoner_engine is None:
        reasoner_engine = make_engine(_role_engine_config(cfg, "reasoner"), key="synth.reasoner.kind")
        owned.append(reasoner_engine)
    if instruct_engine is None:
        if s.instruct is None:
            instruct_engine = reasoner_engine
        else:
            instruct_engine = make_engine(s.instruct, key="synth.instruct.kind")
            owned.append(instruct_engine)

    def role(name: str, engine: Any, max_new_tokens: int, concurrency: int) -> Role:
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=s.temperature, top_p=s.top_p)
        return Role(name, chat_fn_for(engine), prompts, sampling=sampling, concurrency=concurrency,
                    max_retries=s.max_retries, model=fp[name])  # fmt: skip

    reasoner = role("reasoner", reasoner_engine, s.max_new_tokens, s.reasoner_concurrency)
    instruct = role("instruct", instruct_engine, s.instruct_max_new_tokens, s.instruct_concurrency)
    judge = Judge(
        instruct.chat_fn("judge"), model=fp["instruct"], prompt=s.judge_prompt, max_retries=s.max_retries,
        sampling=replace(instruct.sampling), concurrency=s.instruct_concurrency,
    )  # fmt: skip
    agent = SynthesisAgent(reasoner, instruct, judge, graph, pages, s, retrieval=retrieval, run_seed=cfg.seed)
    describe = {"judge": judge.describe(), "reasoner": reasoner.describe(), "instruct": instruct.describe()}
    return agent, describe, owned


async def _grow_all(
    agent: Any, todo: list[Seed], records_path: Path, provenance: dict[str, Any], in_flight: int, already: int
) -> list[str]:
    """Grow seeds with at most `in_flight` at once; append each finished record durably. Returns error texts."""
    sem = asyncio.Semaphore(in_flight)
    lock = asyncio.Lock()
    errors: list[str] = []
    tally = collections.Counter({"done": already})
    appender = JsonlAppender(records_path)
    bar = progress(total=len(todo) + already, initial=already, desc="synth seeds", unit="seed")

    async def one(seed: Seed) -> None:
        async with sem:
            try:
                rec = await agent.grow(seed)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug or an engine failure outside the bounded retries: not recorded
                log.exception("seed %s failed", seed.id)
                errors.append(f"{seed.id}: {type(e).__name__}: {e}")
                bar.update(1)
                return
        rec.provenance = {**provenance, "seed_kind": seed.kind}
        async with lock:
            # model replies and server errors end up in records: one redaction step before they reach disk
            await asyncio.to_thread(appender.append, redact_obj(rec.to_dict()))
        tally["done"] += 1
        tally["variants"] += len(rec.selected(agent.cfg.max_variants_per_seed))
        tally["rejected_seeds"] += rec.status == "rejected"
        bar.set_postfix(
            selected=tally["variants"], rejected_seeds=tally["rejected_seeds"], errors=len(errors)
        )
        bar.update(1)

    try:
        await asyncio.gather(*(one(x) for x in todo))
    finally:
        appender.close()
        bar.close()
    return errors


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.num_seeds is not None:
        cfg.synth.num_seeds = args.num_seeds
    qa = None
    if cfg.synth.seeds != "pages":
        qa = Path(args.qa) if args.qa else resolve_qa_file(cfg.synth.qa_file, args.train_release)
    links = args.links or cfg.synth.links_file
    beside = (
        Path(args.pages).parent / "wikilinks.jsonl"
    )  # fetched with the release when data.include_wikilinks
    if links is None and beside.is_file():
        links = str(beside)
    stats = asyncio.run(synthesize(cfg, args.output, args.pages, links_path=links, qa_path=qa))
    y = stats["yield"]
    log.warning(
        "synth: %d seeds, %d accepted variants, %d need tools, %d selected -> %s/train.jsonl",
        stats["seeds"]["finished"], y["unique_accepted"], y["need_tools"], y["selected"], args.output,
    )  # fmt: skip
    return 0
