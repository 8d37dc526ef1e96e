"""The QA synthesis agent: grow one seed into harder, verified variants (paper §3.2.2; released code §5.2).

Per seed: build the first question (page seeds: from the root page; QA seeds: the given QA and its statements),
verify it (turn 0), then for up to max_turns - 1 turns let the reasoning model choose an action:
- inject: follow a link from a page the question draws on to an unseen neighbour, have the reasoner write a
  question that describes an entity through a fact of that neighbour, skip the fact if the statements already
  cover it, and rewrite the current question so it needs that fact (answer unchanged);
- fuzz: blur one detail (answer unchanged);
- exit: offered only once some variant was answered correctly 0 of n times without tools.
Every new question is verified: validity (reasoner), difficulty (n no-tool answers by the reasoner, each judged by
the instruct model), uniqueness (every wrongly judged answer checked as a possible alternative; one is enough to
reject). An accepted question becomes the current one; a rejected one is recorded with its reason.

All sampling seeds come from a per-seed RNG keyed by the seed id (and page extraction from the page URL), so a
resumed run grows the same seeds the same way whatever ran concurrently.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass, replace
from typing import Any

from asearcher.eval.judge import Judge
from asearcher.eval.metrics import normalize_squad
from asearcher.retrieval.stores import PageStore

from .links import LinkGraph
from .records import Edit, PageInfo, SeedRecord, Variant
from .replies import (
    QA,
    Action,
    Alternative,
    Covered,
    Fuzzed,
    PageSummary,
    QAWithStatement,
    ReplyError,
    Valid,
    extract_answer,
)
from .roles import Role, count_calls
from .seeds import Seed, statements_from_passages

log = logging.getLogger(__name__)

ACTIONS = {
    "inject": "inject: add one more fact from a linked Wikipedia page, so the question needs it.",
    "fuzz": "fuzz: blur one specific detail (a name into a description, a date into a period).",
    "exit": "exit: stop editing; the question is hard enough.",
}


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Candidate:
    question: str
    answer: str
    statement: str | None = None  # injection: the new supporting fact
    page: PageInfo | None = None  # injection: the neighbour page it came from
    detail: str = ""


def stable_int(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:6], "big")


def bullets(items: list[str]) -> str:
    return "\n".join(f"- {s}" for s in items) if items else "(none)"


class SynthesisAgent:
    def __init__(
        self,
        reasoner: Role,
        instruct: Role,
        judge: Judge,
        graph: LinkGraph,
        pages: PageStore,
        cfg: Any,
        *,
        retrieval: Any = None,
        run_seed: int = 1,
    ):
        self.reasoner = reasoner
        self.instruct = instruct
        self.judge = judge
        self.graph = graph
        self.pages = pages
        self.cfg = cfg
        self.retrieval = retrieval
        self.run_seed = run_seed
        self.direct_sampling = replace(
            reasoner.sampling, temperature=cfg.direct_temperature, max_new_tokens=cfg.direct_max_new_tokens
        )
        self._page_tasks: dict[str, asyncio.Task] = {}

    # ---- pages ---------------------------------------------------------------------------------------------------
    async def page(self, url: str) -> PageInfo:
        """Summary and information points of a page (instruct model), shared by every seed that visits it."""
        task = self._page_tasks.get(url)
        if task is None:
            task = asyncio.ensure_future(self._extract(url))
            self._page_tasks[url] = task
        return await asyncio.shield(task)

    async def _extract(self, url: str) -> PageInfo:
        row = self.pages.lookup(url)
        if row is None:
            raise Rejected("page_missing", url)
        content = str(row["contents"])[: self.cfg.page_max_chars]
        s = stable_int(self.run_seed, "page", url)
        try:
            head = await self.instruct.ask("summarize_page", PageSummary, seed=s, url=url, content=content)
            points = await self.instruct.ask(
                "extract_points", "points", seed=s + 7919, title=head.title, content=content,
                max_points=self.cfg.max_points,
            )  # fmt: skip
        except ReplyError as e:
            raise Rejected(e.reason, e.detail) from None
        return PageInfo(
            url, head.title, head.summary, points[: self.cfg.max_points], self.graph.neighbors(url)
        )

    # ---- one seed ------------------------------------------------------------------------------------------------
    async def grow(self, seed: Seed) -> SeedRecord:
        rng = random.Random(stable_int(self.run_seed, seed.id))
        rec = SeedRecord(seed_id=seed.id, kind=seed.kind, status="done")
        rec.calls = count_calls()  # this task's calls (the roles count into it)
        try:
            await self._start(seed, rec, rng)
        except Rejected as e:
            rec.status, rec.reason = "rejected", e.reason
            rec.edits.append(Edit(0, "seed", "rejected", e.reason, rec.question, e.detail))
            return rec
        visited = {p.url for p in rec.relevant}
        counts = {"inject": 0, "fuzz": 0}
        ready = False
        try:
            k = await self._verify(rec.question, rec.answer, rec.statements, rng)
        except Rejected as e:
            rec.status, rec.reason = "rejected", f"seed_{e.reason}"
            rec.edits.append(Edit(0, "seed", "rejected", e.reason, rec.question, e.detail))
            return rec
        rec.variants.append(self._variant(0, "seed", rec, counts, k))
        rec.edits.append(
            Edit(0, "seed", "accepted", question=rec.question, no_tool=f"{k}/{self.cfg.n_direct}")
        )
        ready = k == 0
        for turn in range(1, self.cfg.max_turns):
            options = ["inject", "fuzz"]
            rng.shuffle(options)
            if ready:
                options.append("exit")
            action = "choose"
            try:
                action = await self._choose(rec, options, rng)
                if action == "exit":
                    rec.edits.append(Edit(turn, "exit", "exit"))
                    break
                cand = await (self._inject(rec, visited, rng) if action == "inject" else self._fuzz(rec, rng))
                if normalize_squad(cand.answer) != normalize_squad(rec.answer):
                    raise Rejected("answer_changed", f"{cand.answer!r} != {rec.answer!r}")
                if normalize_squad(cand.question) == normalize_squad(rec.question):
                    raise Rejected("unchanged", "the edit returned the same question")
                statements = rec.statements + ([cand.statement] if cand.statement else [])
                k = await self._verify(cand.question, rec.answer, statements, rng)
            except Rejected as e:
                rec.edits.append(Edit(turn, action, "rejected", e.reason, detail=e.detail))
                continue
            counts[action] += 1
            rec.question, rec.statements = cand.question, statements
            if cand.page is not None and cand.page.url not in {p.url for p in rec.relevant}:
                rec.relevant.append(cand.page)
            rec.variants.append(self._variant(turn, action, rec, counts, k))
            rec.edits.append(
                Edit(turn, action, "accepted", question=cand.question, detail=cand.detail,
                     no_tool=f"{k}/{self.cfg.n_direct}")
            )  # fmt: skip
            ready = ready or k == 0
        return rec

    def _variant(self, turn: int, action: str, rec: SeedRecord, counts: dict[str, int], k: int) -> Variant:
        return Variant(
            turn, action, rec.question, rec.answer, len(rec.statements), counts["inject"], counts["fuzz"], k,
            self.cfg.n_direct,
        )  # fmt: skip

    async def _ask(self, role: Role, prompt: str, shape: Any, rng: random.Random, **fields: Any) -> Any:
        try:
            return await role.ask(prompt, shape, seed=rng.randrange(2**31), **fields)
        except ReplyError as e:
            raise Rejected(e.reason, e.detail) from None

    async def _start(self, seed: Seed, rec: SeedRecord, rng: random.Random) -> None:
        if seed.kind == "page":
            root = await self.page(seed.url or "")
            rec.relevant.append(root)
            qa = await self._ask(
                self.reasoner, "base_qa", QAWithStatement, rng, title=root.title, summary=root.summary,
                points=bullets(root.points),
            )  # fmt: skip
            rec.question, rec.answer, rec.statements = qa.question, qa.answer, [qa.statement]
            return
        rec.question, rec.answer = seed.question, seed.answer
        statements, urls = list(seed.statements), list(seed.urls)
        if not statements:
            statements, urls = await self._support(seed)
        rec.statements = statements
        for url in urls:  # pages the facts come from: where injection starts; a page that fails is skipped
            try:
                rec.relevant.append(await self.page(url))
            except Rejected as e:
                log.debug("seed %s: page %s skipped (%s)", seed.id, url, e.reason)

    async def _support(self, seed: Seed) -> tuple[list[str], list[str]]:
        if self.retrieval is None:
            raise Rejected("no_support", "the seed has no statements and no retrieval server is configured")
        try:
            hits = (await self.retrieval.aretrieve([seed.question], self.cfg.support_topk))[0]
        except Exception as e:  # the server's own retries are exhausted: this seed cannot start
            raise Rejected("retrieval_error", f"{type(e).__name__}: {e}") from None
        statements, urls = statements_from_passages(hits, seed.answer)
        if not statements:
            raise Rejected("no_support", "no retrieved passage states the answer")
        return statements, urls

    async def _choose(self, rec: SeedRecord, options: list[str], rng: random.Random) -> str:
        history = bullets(
            [f"{e.action}: {e.outcome}" + (f" ({e.reason})" if e.reason else "") for e in rec.edits]
        )
        choice = await self._ask(
            self.reasoner, "choose_action", Action, rng, question=rec.question, answer=rec.answer,
            statements=bullets(rec.statements), history=history, options=bullets([ACTIONS[o] for o in options]),
            names=", ".join(options),
        )  # fmt: skip
        action = choice.action.strip(" .\"'")
        if action not in options:
            raise Rejected("unknown_action", f"{choice.action!r} is not one of {options}")
        return action

    async def _inject(self, rec: SeedRecord, visited: set[str], rng: random.Random) -> Candidate:
        sources = [p for p in rec.relevant if any(u not in visited for u in p.links)]
        if not sources:
            raise Rejected("no_unseen_link", "every linked page was already visited")
        entity = rng.choice(sources)
        nb_url = rng.choice([u for u in entity.links if u not in visited])
        visited.add(nb_url)
        nb = await self.page(nb_url)
        link = await self._ask(
            self.reasoner, "link_qa", QAWithStatement, rng, name_a=entity.title, summary_a=entity.summary,
            name_b=nb.title, points_b=bullets(nb.points),
        )  # fmt: skip
        cover = await self._ask(
            self.reasoner,
            "check_cover",
            Covered,
            rng,
            statements=bullets(rec.statements),
            statement=link.statement,
        )
        if cover.covered:
            raise Rejected("fact_covered", link.statement)
        comp = await self._ask(
            self.reasoner, "compose_qa", QA, rng, question=rec.question, answer=rec.answer, entity=entity.title,
            link_question=link.question, statement=link.statement,
        )  # fmt: skip
        return Candidate(comp.question, comp.answer, link.statement, nb, f"{entity.title} -> {nb.title}")

    async def _fuzz(self, rec: SeedRecord, rng: random.Random) -> Candidate:
        f = await self._ask(
            self.reasoner, "fuzz", Fuzzed, rng, question=rec.question, answer=rec.answer,
            statements=bullets(rec.statements),
        )  # fmt: skip
        return Candidate(f.question, f.answer, detail=f.changed)

    async def _verify(self, question: str, answer: str, statements: list[str], rng: random.Random) -> int:
        """Validity, difficulty and uniqueness; the number of correct no-tool answers, or Rejected."""
        valid = await self._ask(
            self.reasoner,
            "check_valid",
            Valid,
            rng,
            question=question,
            answer=answer,
            statements=bullets(statements),
        )
        if not valid.valid:
            raise Rejected("invalid", valid.reason)
        seeds = [rng.randrange(2**31) for _ in range(self.cfg.n_direct)]
        replies = await asyncio.gather(
            *(self._direct(question, s) for s in seeds)
        )  # a failed call counts as a wrong (empty) answer
        answers = [extract_answer(r) for r in replies]
        verdicts = await asyncio.gather(
            *(self.judge.judge(question, [answer], a, seed=s) for a, s in zip(answers, seeds, strict=True))
        )
        correct = sum(1 for v in verdicts if v.score == 1.0)
        wrong: dict[str, str] = {}
        for a, v in zip(answers, verdicts, strict=True):
            if a and v.score != 1.0:
                wrong.setdefault(normalize_squad(a), a)
        for cand in wrong.values():
            alt = await self._ask(
                self.reasoner, "check_alternative", Alternative, rng, question=question, answer=answer,
                statements=bullets(statements), candidate=cand,
            )  # fmt: skip
            if alt.alternative:
                raise Rejected("not_unique", f"{cand!r} is also a valid answer: {alt.reason}")
        return correct

    async def _direct(self, question: str, seed: int) -> str:
        try:
            return await self.reasoner.text(
                "direct_answer", seed=seed, sampling=self.direct_sampling, question=question
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.reasoner.failures["direct_answer:call_error"] += 1
            log.warning("no-tool answer failed: %s: %s", type(e).__name__, e)
            return ""
