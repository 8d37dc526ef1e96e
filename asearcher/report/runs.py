"""Reading a run's outputs for the report: the merged config, evaluation aggregates with their protocol cards, the
training metrics and saved rollouts, the synthesis statistics. Absent inputs come back as `Missing` (the path and
the rule that makes it), so every table and figure can say what it lacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from asearcher.config import Config, load_config
from asearcher.errors import UserFacingError
from asearcher.tools.factory import setting_label
from asearcher.utils.jsonl import read_jsonl


@dataclass(frozen=True)
class Missing:
    path: str
    rule: str

    def line(self) -> str:
        return f"missing: {self.path}, made by {self.rule}"


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserFacingError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserFacingError(f"{path}: expected a JSON object")
    return data


# ---- the run ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A run's merged config and where its outputs are."""

    cfg: Config

    @classmethod
    def load(cls, config: str | Path) -> Run:
        return cls(load_config(config))

    @property
    def results(self) -> Path:
        return Path(self.cfg.results_dir)

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def setting(self) -> str:
        return setting_label(self.cfg)

    @property
    def tiny(self) -> bool:
        """The CPU default's tiny random-init model (the engine's model is the DAG's results/models/tiny)."""
        return Path(self.cfg.engine.model).as_posix().rstrip("/").endswith("models/tiny")

    @property
    def label(self) -> str:
        """Which run made a figure: its name, and 'CPU default, tiny model' when so."""
        return f"run '{self.cfg.name}'" + (" (CPU default, tiny model)" if self.tiny else "")

    def eval_path(self, model: str, benchmark: str, setting: str | None = None) -> Path:
        return self.results / "eval" / model / (setting or self.setting) / benchmark / "aggregate.json"

    def evaluated(self, model: str, setting: str | None = None) -> dict[str, Path]:
        """benchmark -> aggregate.json of every evaluation of `model` in `setting` found on disk."""
        root = self.results / "eval" / model / (setting or self.setting)
        return {p.parent.name: p for p in sorted(root.glob("*/aggregate.json"))}

    def settings(self, model: str) -> list[str]:
        """Every setting `model` was evaluated in (the run's own first)."""
        root = self.results / "eval" / model
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        return sorted(found, key=lambda s: s != self.setting)

    def train_dir(self) -> Path:
        return self.run_dir / "train"

    def model_paths(self) -> dict[str, str]:
        return {name: Path(m.model).as_posix().rstrip("/") for name, m in self.cfg.models.items()}


# ---- evaluations ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalResult:
    model: str
    setting: str
    benchmark: str
    path: Path
    aggregate: dict[str, Any]
    config: dict[str, Any] | None  # the evaluation's merged config (config.yaml beside aggregate.json)

    @property
    def k(self) -> int:
        return int(self.aggregate.get("k") or 1)

    @property
    def card(self) -> dict[str, Any]:
        return self.aggregate.get("protocol") or {}

    @property
    def web(self) -> bool:
        return ((self.card.get("tools") or {}).get("backend")) == "web"

    @property
    def in_distribution(self) -> bool:
        """Flagged in the protocol card: the questions are ones the model trained on."""
        return bool((self.card.get("benchmark") or {}).get("in_distribution"))

    def metrics(self) -> list[str]:
        return list((self.aggregate.get("metrics") or {}).keys())

    def value(self, metric: str, statistic: str) -> float | None:
        """The metric in percent: statistic 'avg' / 'avg@K' -> avg@k of the run, 'pass@K' -> pass@k of the run
        (k is the run's own; the caller notes when it differs from the paper's)."""
        m = (self.aggregate.get("metrics") or {}).get(metric)
        if not m:
            return None
        kind = statistic.split("@")[0]
        v = m.get(f"{kind}@{self.k}") if kind in ("avg", "pass") else m.get(statistic)
        if v is None and kind == "avg":
            v = m.get("mean")
        return None if v is None else 100.0 * float(v)


def load_eval(path: str | Path) -> EvalResult:
    """One aggregate.json (results/eval/<model>/<setting>/<benchmark>/aggregate.json) and the config beside it."""
    path = Path(path)
    agg = read_json(path)
    cfg_path = path.with_name("config.yaml")
    config = None
    if cfg_path.is_file():
        try:
            config = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UserFacingError(f"{cfg_path}: not valid YAML: {e}") from None
    return EvalResult(
        model=path.parent.parent.parent.name,
        setting=path.parent.parent.name,
        benchmark=str(agg.get("benchmark") or path.parent.name),
        path=path,
        aggregate=agg,
        config=config if isinstance(config, dict) else None,
    )


def _corpus(config: dict[str, Any] | None, card: dict[str, Any]) -> str:
    if ((card.get("tools") or {}).get("backend")) == "web":
        search = (card.get("tools") or {}).get("search") or {}
        return f"web ({search.get('url') or search.get('api') or 'search API'})"
    data = (config or {}).get("data") or {}
    limit = data.get("corpus_limit")
    return "wiki-18 (ASearcher-Local-Knowledge)" + (f", first {limit} passages" if limit else "")


def protocol_summary(result: EvalResult) -> dict[str, Any]:
    """The protocol card's columns in the report: corpus, retriever, top-k, search backend, judge, k, temperature,
    prompt hashes (agent prompt; judge prompt when judged), and the code version."""
    card = result.card
    retr = card.get("retriever") or {}
    judge_details = card.get("judge_details") or {}
    judge_prompt = judge_details.get("prompt_sha256")
    return {
        "corpus": _corpus(result.config, card),
        "retriever": retr.get("encoder") or retr.get("backend"),
        "topk": retr.get("topk"),
        "search_backend": card.get("search_backend"),
        "judge": card.get("judge") or "none",
        "k": card.get("k", result.k),
        "temperature": card.get("temperature"),
        "prompt_hash": (card.get("prompt_hash") or "")[:12],
        "judge_prompt_hash": str(judge_prompt or "")[:12],
        "code_version": card.get("code_version"),
    }


# ---- training and synthesis -----------------------------------------------------------------------------------------
def metrics_rows(path: str | Path) -> list[dict[str, Any]]:
    """The per-step rows of a training run's metrics.jsonl, by step."""
    return sorted(read_jsonl(path), key=lambda r: int(r.get("step", 0)))


def derived_pairs(run: Run) -> list[tuple[str, str]]:
    """Before/after-RL pairs: report.pairs, else the model whose path is RL's starting point (the SFT output
    when the warm start is on, else the engine's model) with the one whose path is RL's output."""
    if run.cfg.report.pairs is not None:
        for i, (a, b) in enumerate(run.cfg.report.pairs):
            for name in (a, b):
                if name not in run.cfg.models:
                    raise UserFacingError(
                        f"report.pairs[{i}]: {name!r} is not a model of the config (models: "
                        f"{', '.join(run.cfg.models) or 'none'})"
                    )
        return [(a, b) for a, b in run.cfg.report.pairs]
    rd = run.run_dir.as_posix()
    init = f"{rd}/sft/model" if run.cfg.rl.sft.enabled else Path(run.cfg.engine.model).as_posix().rstrip("/")
    final = f"{rd}/train/final"
    paths = run.model_paths()
    before = [n for n, p in paths.items() if p == init]
    after = [n for n, p in paths.items() if p == final]
    return [(b, a) for b in before for a in after]


def in_distribution_names(run: Run) -> set[str]:
    """Benchmarks expected and labelled in-distribution: report.in_distribution, and with eval.in_distribution on,
    the benchmarks whose spec says in_distribution (the RL training questions, `train-questions`)."""
    names = set(run.cfg.report.in_distribution)
    if run.cfg.eval.in_distribution:
        from asearcher.eval.registry import list_run_benchmarks

        names |= {s.name for s in list_run_benchmarks() if s.in_distribution}
    return names


def is_in_distribution(benchmark: str, flagged: set[str]) -> bool:
    return benchmark.lower().startswith("train-") or benchmark in flagged
