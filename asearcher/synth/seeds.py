"""Seeds of the synthesis agent, both ways the sources describe.

- Page seeds (the released code): a random page of the local Wikipedia that links to at least one other page;
  the agent writes the first question about it.
- QA seeds (the paper): a training question with its answer and supporting statements. Accepted inputs: JSONL
  rows `{question, answer (str or list), statements?, urls?}` with any id field of the train-data releases, a
  HotpotQA JSON list (`supporting_facts` + `context`), or a MuSiQue JSON/JSONL (`paragraphs` with
  `is_supporting`). Rows without statements get them from the retrieval server at run time (`find_support`).

Seed ids are stable ("page:<url>", "qa:<id>"), so a resumed run skips exactly the seeds it finished.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asearcher.data.trainset import ID_FIELDS
from asearcher.retrieval.urls import CANONICAL_PREFIX, normalize_url
from asearcher.utils.jsonl import DataError, iter_jsonl_numbered

from .links import LinkGraph

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Seed:
    id: str
    kind: str  # "page" | "qa"
    url: str | None = None  # page seeds: the root page
    question: str = ""
    answer: str = ""
    statements: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # qa seeds: pages of the supporting facts, when known


def page_seeds(graph: LinkGraph, n: int, rng: random.Random) -> list[Seed]:
    """n distinct root pages with at least one neighbour (fewer if the graph has fewer)."""
    order = list(range(len(graph)))
    rng.shuffle(order)
    out: list[Seed] = []
    for i in order:
        if len(out) >= n:
            break
        url = graph.page_url_at(i)
        if graph.neighbors(url):
            out.append(Seed(id=f"page:{url}", kind="page", url=url))
    return out


def _answer(value: Any, where: str) -> str:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: a seed needs a non-empty 'answer'")
    return value.strip()


def _row_id(row: dict, fallback: str) -> str:
    for key in (*ID_FIELDS, "_id"):
        if row.get(key) not in (None, ""):
            return str(row[key]).strip()
    return fallback


def _url_of(title: str) -> str:
    return normalize_url(CANONICAL_PREFIX + title)


def _from_hotpot(row: dict) -> tuple[list[str], list[str]]:
    ctx = {t: sents for t, sents in row.get("context") or []}
    statements, urls = [], []
    for title, idx in row.get("supporting_facts") or []:
        sents = ctx.get(title) or []
        if isinstance(idx, int) and 0 <= idx < len(sents):
            statements.append(" ".join(sents[idx].split()))
        if _url_of(title) not in urls:
            urls.append(_url_of(title))
    return statements, urls


def _from_musique(row: dict) -> tuple[list[str], list[str]]:
    statements, urls = [], []
    for p in row.get("paragraphs") or []:
        if p.get("is_supporting"):
            statements.append(" ".join(str(p.get("paragraph_text", "")).split()))
            if p.get("title"):
                urls.append(_url_of(p["title"]))
    return statements, urls


def _seed_from_row(row: dict, where: str, fallback_id: str) -> Seed:
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise DataError(f"{where}: a seed needs a non-empty 'question'")
    if "supporting_facts" in row:
        statements, urls = _from_hotpot(row)
    elif "paragraphs" in row:
        statements, urls = _from_musique(row)
    else:
        statements = row.get("statements") or []
        urls = row.get("urls") or []
        if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
            raise DataError(f"{where}: 'statements' must be a list of strings")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise DataError(f"{where}: 'urls' must be a list of strings")
    return Seed(
        id=f"qa:{_row_id(row, fallback_id)}",
        kind="qa",
        question=" ".join(row["question"].split()),
        answer=_answer(row.get("answer"), where),
        statements=[s for s in statements if s.strip()],
        urls=[normalize_url(u) for u in urls],
    )


def load_qa_seeds(path: str | Path) -> list[Seed]:
    """Every seed QA of a file (see the module doc for formats); a bad row is an error naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"seed QA file {path} does not exist")
    seeds: list[Seed] = []
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not a JSON file: {e}") from None
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of questions")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{path}[{i}]: expected an object")
            seeds.append(_seed_from_row(row, f"{path}[{i}]", f"{path.stem}:{i}"))
    else:
        for lineno, row in iter_jsonl_numbered(path):
            seeds.append(_seed_from_row(row, f"{path}:{lineno}", f"{path.stem}:{lineno}"))
    seen: dict[str, int] = {}
    for s in seeds:  # a repeated id gets a suffix, as the train-data loader does: nothing dropped
        seen[s.id] = seen.get(s.id, 0) + 1
        if seen[s.id] > 1:
            s.id = f"{s.id}#{seen[s.id]}"
    return seeds


def pick_qa_seeds(seeds: list[Seed], n: int, rng: random.Random) -> list[Seed]:
    return rng.sample(seeds, min(n, len(seeds)))


def statements_from_passages(
    passages: list[dict], answer: str, max_statements: int = 2
) -> tuple[list[str], list[str]]:
    """Sentences of retrieved passages that state the answer, and those passages' page URLs."""
    needle = answer.lower()
    statements: list[str] = []
    urls: list[str] = []
    for doc in passages:
        text = str(doc.get("contents", ""))
        title, _, body = text.partition("\n")
        title = title.strip().strip('"')
        for sent in _SENTENCE.split(body):
            if needle in sent.lower():
                s = " ".join(sent.split())
                statements.append(f"{title}: {s}" if title and title.lower() not in s.lower() else s)
                if doc.get("url") and normalize_url(str(doc["url"])) not in urls:
                    urls.append(normalize_url(str(doc["url"])))
                break
        if len(statements) >= max_statements:
            break
    return statements, urls
