"""What the synthesis agent keeps per seed, and the training rows selected from it.

A `SeedRecord` is one line of `records.jsonl`: the final question and answer, the pages it drew on (url, summary,
information points), the supporting statements, every edit tried (accepted or rejected, with the reason), and the
accepted variants with their no-tool accuracy. Selection follows the paper: variants that need tools (0 of n
answered correctly without them), at most `max_variants_per_seed` per seed, the most edited first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SOURCE = "asearcher_synth"


@dataclass
class PageInfo:
    url: str
    title: str
    summary: str
    points: list[str]
    links: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.title,
            "url": self.url,
            "summary": self.summary,
            "information_points": self.points,
            "relevant_links": self.links,
        }


@dataclass
class Variant:
    """An accepted question: how it was made and how often the reasoner solved it without tools."""

    turn: int
    action: str  # "seed" | "inject" | "fuzz"
    question: str
    answer: str
    statements: int  # supporting statements behind it
    injections: int  # accepted injections on the path to it
    fuzzes: int  # accepted fuzzes on the path to it
    no_tool_correct: int
    n: int

    @property
    def needs_tools(self) -> bool:
        return self.no_tool_correct == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "direct_gen_acc": f"{self.no_tool_correct}/{self.n}"}


@dataclass
class Edit:
    turn: int
    action: str
    outcome: str  # "accepted" | "rejected" | "exit"
    reason: str = ""
    question: str = ""
    detail: str = ""
    no_tool: str = ""  # "k/n" once the difficulty check ran

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != ""}


@dataclass
class SeedRecord:
    seed_id: str
    kind: str
    status: str  # "done" | "rejected"
    reason: str = ""  # why the seed itself was rejected
    question: str = ""
    answer: str = ""
    relevant: list[PageInfo] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def selected(self, max_per_seed: int) -> list[Variant]:
        """Edited variants that need tools, at most max_per_seed, the most edited (latest) first."""
        hard = [v for v in self.variants if v.action != "seed" and v.needs_tools]
        return list(reversed(hard))[:max_per_seed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed_id": self.seed_id,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "qa": {"question": self.question, "answer": self.answer},
            "relevant": [p.to_dict() for p in self.relevant],
            "statements": self.statements,
            "edit_history": [e.to_dict() for e in self.edits],
            "qa_history": [v.to_dict() for v in self.variants],
            "calls": self.calls,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedRecord:
        return cls(
            seed_id=d["seed_id"],
            kind=d["kind"],
            status=d["status"],
            reason=d.get("reason", ""),
            question=d["qa"]["question"],
            answer=d["qa"]["answer"],
            relevant=[
                PageInfo(
                    p["url"], p["name"], p["summary"], p["information_points"], p.get("relevant_links", [])
                )
                for p in d.get("relevant", [])
            ],
            statements=list(d.get("statements", [])),
            edits=[Edit(**e) for e in d.get("edit_history", [])],
            variants=[
                Variant(**{k: v for k, v in x.items() if k != "direct_gen_acc"})
                for x in d.get("qa_history", [])
            ],
            calls=dict(d.get("calls", {})),
            provenance=dict(d.get("provenance", {})),
        )


def training_rows(records: list[SeedRecord], max_per_seed: int) -> list[dict[str, Any]]:
    """Rows in the ASearcher-Base-35k layout ({qid, question, answer: [..], aug_answer, source})."""
    rows = []
    for rec in records:
        for v in rec.selected(max_per_seed):
            rows.append(
                {
                    "qid": f"synth:{rec.seed_id}:t{v.turn}",
                    "question": v.question,
                    "answer": [v.answer],
                    "aug_answer": [],
                    "source": f"{SOURCE}_{rec.kind}",
                    "injections": v.injections,
                    "fuzzes": v.fuzzes,
                    "direct_gen_acc": f"{v.no_tool_correct}/{v.n}",
                }
            )
    return rows
