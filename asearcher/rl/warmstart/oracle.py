"""Oracle search trajectories for the SFT warm start, recorded by driving the REAL base agent.

An `OracleEngine` stands in for the LLM: it emits scripted text for each turn of the agent's protocol,
so the records (prompts, token ids, stop strings, read turns, history handling) are exactly what the agent
produces with a real model. The script per question:

  act  : "</think>\n<search> QUESTION </search>"    (the prompt already opened <think>)
  read : a sentence of the retrieved text that contains the gold answer, then "So the answer is GOLD.\n</think>"
  act  : "\n<answer> GOLD </answer>"

Questions whose gold answer (or an aug answer) does not appear in the top-k retrieved text of that query are
skipped (counted), so every oracle answer is grounded in what the agent actually saw.

Distractor twins (`distractor_rate` > 0): for that fraction of questions the oracle also records a second trajectory,
identical up to the read turn, that cites and answers a *wrong* string from the same results (the title of another
retrieved passage that shares no word with any gold). A model fine-tuned on both knows the search/answer format
but is split between the right and the wrong candidate: the uncertainty that RL must then resolve from the reward.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asearcher.agent.trajectory import Trajectory
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend, ToolError

log = logging.getLogger(__name__)

SEARCH_TEXT = "</think>\n<search> {query} </search>"
READ_TEXT = "{evidence}So the answer is {answer}.\n</think>"
ANSWER_TEXT = "\n<answer> {answer} </answer>"
_SAFE = re.compile(r"[<>]")
TWIN_SUFFIX = (
    "~distractor"  # qid suffix of a distractor twin trajectory (no '#': the engine splits rids on it)
)


@dataclass
class OraclePlan:
    qid: str
    question: str
    query: str
    gold: str  # the gold string as written in the data, found in the retrieved text
    distractor: str | None = None  # a wrong candidate from the same results (see pick_distractor)
    answer: str = ""  # what the script cites and answers: the gold, or the distractor in a twin

    def __post_init__(self) -> None:
        self.answer = self.answer or self.gold

    def twin(self) -> OraclePlan:
        assert self.distractor is not None
        return OraclePlan(
            self.qid + TWIN_SUFFIX,
            self.question,
            self.query,
            self.gold,
            self.distractor,
            answer=self.distractor,
        )


def find_gold(golds: Sequence[str], text: str) -> str | None:
    """The first gold string that occurs in text as a whole word/phrase (case-insensitive)."""
    low = text.lower()
    for g in golds:
        g = g.strip()
        if not g:
            continue
        if re.search(r"(?<!\w)" + re.escape(g.lower()) + r"(?!\w)", low):
            return g
    return None


def _title(contents: str) -> str:
    """The passage title of a wiki-corpus hit ('"Title"\\npassage')."""
    first = contents.split("\n", 1)[0].strip()
    return first[1:-1].strip() if len(first) >= 2 and first[0] == first[-1] == '"' else ""


def pick_distractor(hits: Sequence[SearchHit], golds: Sequence[str]) -> str | None:
    """The first hit title (rank order) that shares no word with any gold and is safe to print, else None."""
    from asearcher.rl.algo.rewards import normalize_train

    gold_words = {w for g in golds for w in normalize_train(g).split()}
    for h in hits:
        t = _title(h.contents)
        words = set(normalize_train(t).split())
        if not words or words & gold_words or _SAFE.search(t) or "assistant" in t.lower() or len(t) > 60:
            continue
        return t
    return None


def wants_twin(qid: str, rate: float, seed: int) -> bool:
    """Deterministic per-question draw: does this question get a distractor twin?"""
    if rate <= 0:
        return False
    h = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
    return int.from_bytes(h[:4], "little") / 2**32 < rate


def evidence_sentence(text: str, gold: str, width: int = 160) -> str:
    """A short window of text around the first occurrence of gold, made safe for the format check."""
    m = re.search(re.escape(gold.lower()), text.lower())
    if not m:
        return ""
    a = max(0, m.start() - width // 2)
    b = min(len(text), m.end() + width // 2)
    snippet = " ".join(_SAFE.sub(" ", text[a:b]).split())
    if "assistant" in snippet.lower():  # would fail the format reward the RL stage applies
        return ""
    return f'The results say: "{snippet}". '


class OracleEngine(InferenceEngine):
    """Scripted 'LLM': returns the oracle text for each turn of each trajectory (keyed by request rid)."""

    def __init__(self, tokenizer: Any, plans: dict[str, OraclePlan]):
        self.tokenizer = tokenizer
        self.plans = plans
        self._turn: dict[str, int] = defaultdict(int)

    @property
    def version(self) -> int:
        return 0

    def _text(self, plan: OraclePlan, turn: int, prompt_text: str) -> str:
        if turn == 0:
            return SEARCH_TEXT.format(query=plan.query)
        if turn == 1:
            info = prompt_text[prompt_text.rfind("<information>") :]
            return READ_TEXT.format(evidence=evidence_sentence(info, plan.answer), answer=plan.answer)
        return ANSWER_TEXT.format(answer=plan.answer)

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        rid = request.rid or ""
        qid = rid.rsplit("#", 1)[0]
        if qid not in self.plans:
            raise KeyError(f"oracle engine: no plan for trajectory {rid!r}")
        turn = self._turn[rid]
        self._turn[rid] += 1
        plan = self.plans[qid]
        prompt_text = self.tokenizer.decode(request.input_ids) if turn == 1 else ""
        text = self._text(plan, turn, prompt_text)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if turn == 1 and len(ids) > request.sampling.max_new_tokens:  # keep within the agent's token budget
            ids = list(
                self.tokenizer.encode(
                    READ_TEXT.format(evidence="", answer=plan.answer), add_special_tokens=False
                )
            )
        n = len(ids)
        return GenerationResult(
            output_ids=ids,
            output_logprobs=[0.0] * n,
            output_versions=[0] * n,
            finish_reason="stop",
            stop_string=None,
            text=self.tokenizer.decode(ids),
        )


def fit_query(question: str, tokenizer: Any, max_new_tokens: int) -> str:
    """The question, cut at a word boundary so the search turn fits the agent's max_new_tokens."""
    words = question.split()
    while words:
        q = " ".join(words)
        if len(tokenizer.encode(SEARCH_TEXT.format(query=q), add_special_tokens=False)) <= max_new_tokens:
            return q
        words.pop()
    return ""


async def plan_question(
    qid: str,
    question: str,
    golds: Sequence[str],
    tools: ToolBackend,
    topk: int,
    doc_max_chars: int,
    query: str | None = None,
) -> tuple[OraclePlan | None, str]:
    """Search the query (default: the question); (plan, "") when a gold string occurs in the top-k text,
    else (None, reason)."""
    query = question if query is None else query
    if not query:
        return None, "no query fits max_new_tokens"
    try:
        hits: list[SearchHit] = await tools.search(query, topk)
    except ToolError as e:
        log.warning("oracle: search for %s failed (%s); question skipped", qid, e)
        return None, "search failed"
    text = "\n".join(h.contents[:doc_max_chars] for h in hits[:topk])
    gold = find_gold(golds, text)
    if gold is None:
        return None, f"gold not in the top-{topk} results"
    return OraclePlan(qid, question, query, gold, distractor=pick_distractor(hits[:topk], golds)), ""


async def oracle_trajectories(
    records: Sequence[Any],
    agent: Any,
    tools: ToolBackend,
    tokenizer: Any,
    *,
    topk: int,
    doc_max_chars: int,
    max_new_tokens: int,
    concurrency: int = 8,
    distractor_rate: float = 0.0,
    seed: int = 0,
    on_done=None,
) -> tuple[list[Trajectory], list[str]]:
    """Run the agent with the oracle engine on records (objects with id, question, answers, aug_answers).

    Returns (trajectories that ended with the oracle answer, {skipped id: reason}); a trajectory whose
    oracle text exceeds max_new_tokens in some turn is skipped too (a real model could not have produced it
    under the agent's budget). With distractor_rate > 0, that fraction of the answered questions also gets a
    distractor twin (qid + TWIN_SUFFIX), listed after the gold trajectories. `on_done(record, traj_or_None,
    twin_or_None)` is called as each question finishes (for resumable logging).
    """
    sem = asyncio.Semaphore(concurrency)
    plans: dict[str, OraclePlan] = {}
    engine = OracleEngine(tokenizer, plans)
    sampling = SamplingParams(temperature=1.0, seed=0)
    skipped: dict[str, str] = {}

    async def record(plan: OraclePlan, rec) -> tuple[Trajectory | None, str]:
        plans[plan.qid] = plan
        traj = await agent.run(
            qid=plan.qid,
            question=rec.question,
            answers=list(rec.answers),
            engine=engine,
            tools=tools,
            sampling=sampling,
        )
        too_long = any(len(c.output_ids) > max_new_tokens for c in traj.llm_calls)
        if traj.finish != "answer" or traj.prediction != plan.answer or too_long:
            return (
                None,
                "oracle text over max_new_tokens" if too_long else f"agent finished with {traj.finish}",
            )
        return traj, ""

    async def one(rec) -> tuple[Trajectory | None, Trajectory | None]:
        async with sem:
            plan, why = await plan_question(
                rec.id,
                rec.question,
                list(rec.answers) + list(rec.aug_answers),
                tools,
                topk,
                doc_max_chars,
                query=fit_query(rec.question, tokenizer, max_new_tokens),
            )
            traj = twin = None
            if plan is not None:
                traj, why = await record(plan, rec)
            if (
                traj is not None
                and plan is not None
                and plan.distractor
                and wants_twin(rec.id, distractor_rate, seed)
            ):
                twin, _ = await record(plan.twin(), rec)
            if traj is None:
                skipped[rec.id] = why
                log.debug("oracle: %s skipped: %s", rec.id, why)
            if on_done is not None:
                on_done(rec, traj, twin)
            return traj, twin

    results = await asyncio.gather(*(one(r) for r in records))
    gold = [t for t, _ in results if t is not None]
    return gold + [w for _, w in results if w is not None], skipped
