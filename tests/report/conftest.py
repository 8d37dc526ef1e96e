"""A small made-up run for the report: a merged config under tmp_path, evaluation aggregates in the real format
(asearcher.eval.outputs.aggregate over per-sample rows), training metrics rows, saved rollouts, synthesis stats and
a sweep's runs.json. Each part can be left out to test the report's missing-input paths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from asearcher.eval.outputs import aggregate
from asearcher.eval.protocol import build_card

REPO = Path(__file__).resolve().parents[2]


def write_aggregate(
    path: Path, model: str, benchmark: str, scores: list[list[float]], *, metrics=("f1",), web: bool = False
) -> Path:
    """aggregate.json (+ config.yaml beside it) of `model` on `benchmark`: scores[question][sample] per metric."""
    k = len(scores[0])
    card = build_card(
        model_name=model,
        engine={"kind": "transformers", "model": f"models/{model}"},
        agent={"kind": "asearcher"},
        prompt_hash="ab" * 32,
        retriever={"backend": "bm25", "topk": 3},
        search_backend="web" if web else "local",
        tools={"backend": "web" if web else "local"},
        judge="judge-model" if "judge" in metrics else None,
        judge_details={"prompt": "judge.txt", "prompt_sha256": "cd" * 32} if "judge" in metrics else None,
        temperature=0.6,
        top_p=0.95,
        max_new_tokens=32,
        k=k,
        seeds=list(range(k)),
        benchmark=benchmark,
        benchmark_file=None,
        n_questions=len(scores),
        sealed=False,
        version="test",
    )
    rows = [
        {
            "id": str(q),
            "sample": s,
            "scores": {m: v for m in metrics},
            "stats": {"turns": 2, "searches": 1, "accesses": 0, "output_tokens": 10},
            "status": "ok",
            "finish": "answer",
        }
        for q, per_q in enumerate(scores)
        for s, v in enumerate(per_q)
    ]
    agg = aggregate(rows, k=k, metric_names=list(metrics), card=card)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(agg))
    path.with_name("config.yaml").write_text(yaml.safe_dump({"data": {"corpus_limit": 1000}}))
    return path


def metrics_row(step: int, reward: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "step": step,
        "version": step,
        "rollout_reward_mean": reward,
        "rollout_trajectories": 8,
    }
    for name, avg in (("searches", 1.0 + step / 4), ("accesses", 0.5), ("tool_calls", 1.5), ("turns", 2.0),
                      ("tokens_per_traj", 20.0 + step)):  # fmt: skip
        row.update(
            {f"rollout_{name}_min": avg / 2, f"rollout_{name}_avg": avg, f"rollout_{name}_max": avg * 2}
        )
    row.update(token_staleness_mean=0.5, group_staleness_max=1, wall_s=2.0 * step)
    return row


def write_metrics(train: Path, rewards: list[float]) -> None:
    train.mkdir(parents=True, exist_ok=True)
    rows = [metrics_row(i + 1, r) for i, r in enumerate(rewards)]
    (train / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    half = max(1, len(rewards) // 4)
    start, end = sum(rewards[:half]) / half, sum(rewards[-half:]) / half
    summary = {"steps": len(rewards), "reward_start": start, "reward_end": end, "reward_gain": end - start}
    (train / "summary.json").write_text(json.dumps(summary))


def write_rollouts(train: Path, texts_by_version: dict[int, list[str]]) -> None:
    d = train / "rollouts"
    d.mkdir(parents=True, exist_ok=True)
    for v, texts in texts_by_version.items():
        lines = [
            json.dumps(
                {"version": v, "step": v + 1, "events": [{"type": "llm", "text": t}, {"type": "tool"}]}
            )
            for t in texts
        ]
        (d / f"v{v:05d}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


SYNTH_STATS = {
    "seeds": {"planned": 4, "finished": 4, "grown": 2, "rejected": 2, "rejected_by_reason": {"no_support": 2}},
    "yield": {"edits_proposed": 10, "candidates_generated": 8, "valid": 6, "unique_accepted": 5, "need_tools": 4,
              "selected": 3, "selected_per_seed": 0.75},
    "edits_rejected_by_reason": {"invalid": 2},
    "selected_questions": {"supporting_facts": {"3": 2, "4": 1}, "injections": {"1": 2, "2": 1},
                           "fuzzes": {"0": 1, "1": 2}, "mean_supporting_facts": 3.333, "mean_injections": 1.333,
                           "mean_fuzzes": 0.667},
    "no_tool_accuracy": {"histogram": {"0": 4, "2": 1}, "n": 2},
}  # fmt: skip


class RunFactory:
    """make(...) writes a run under tmp_path and returns the path of its merged config."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.results = tmp_path / "results"

    def config(self, **report: Any) -> Path:
        cfg = yaml.safe_load((REPO / "configs/default.yaml").read_text())
        cfg["results_dir"] = str(self.results)
        if report:
            cfg["report"] = report
        path = self.results / cfg["name"] / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    @property
    def run_dir(self) -> Path:
        return self.results / "cpu-default"

    def eval_path(self, model: str, benchmark: str, setting: str = "asearcher-bm25-top3") -> Path:
        return self.results / "eval" / model / setting / benchmark / "aggregate.json"

    def make(self, *, evals=True, train=True, rollouts=True, synth=True, **report: Any) -> Path:
        if evals:
            for model, base in (("tiny-sft", 0.0), ("tiny-rl", 0.5)):
                for bench in ("Bamboogle", "HotpotQA", "train-questions"):
                    write_aggregate(self.eval_path(model, bench), model, bench, [[base, 1.0], [0.0, base]])
        if train:
            write_metrics(self.run_dir / "train", [0.1, 0.2, 0.3, 0.5, 0.4, 0.6, 0.7, 0.8])
        if rollouts:
            write_rollouts(
                self.run_dir / "train",
                {
                    0: ["<search>x</search> wait", "however"],
                    4: ["Wait, let me check. However wait", "confirm"],
                },
            )
        if synth:
            (self.run_dir / "synth").mkdir(parents=True, exist_ok=True)
            (self.run_dir / "synth" / "stats.json").write_text(json.dumps(SYNTH_STATS))
        return self.config(**report)

    def sweep(self, name: str = "eta", values=(0, 2), parameter: str = "rl.max_head_offpolicyness") -> Path:
        runs = []
        for i, v in enumerate(values):
            train = self.results / "sweeps" / name / f"v{v}" / "train"
            write_metrics(train, [0.1 * (i + 1) + 0.05 * s for s in range(6)])
            agg = write_aggregate(
                self.results / "eval" / f"{name}-{v}" / "s" / "Bamboogle" / "aggregate.json",
                f"{name}-{v}",
                "Bamboogle",
                [[0.25 * i, 0.5]],
            )
            runs.append(
                {"value": v, "name": f"{name}-{v}", "train_dir": str(train), "eval": {"Bamboogle": str(agg)}}
            )
        path = self.results / "sweeps" / name / "runs.json"
        payload = {
            "sweep": name,
            "parameter": parameter,
            "label": "eta",
            "description": "test sweep",
            "runs": runs,
        }
        path.write_text(json.dumps(payload))
        return path


@pytest.fixture
def runs(tmp_path: Path) -> RunFactory:
    return RunFactory(tmp_path)
