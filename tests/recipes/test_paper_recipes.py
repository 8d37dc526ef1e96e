"""Recipe smoke test: every recipe in configs/paper/ runs on the CPU through the real agent, tools, rewards, trainer,
controller and eval runner, with only the scale shrunk.

What is scaled down, and nothing else: the model (the tiny random-init Qwen2 instead of Qwen2.5/QwQ, with a scripted
search policy generating in its vocabulary, see smoke.py), the hardware (torch trainer on the CPU, one rollout
worker, no GPUs), the corpus (short passages of the mirror corpus behind a real BM25 retrieval server; the web
recipes search it too, since the web backend does not exist yet), the steps (one RL step of one group of two) and
the questions (two per benchmark). The agent, reward, staleness, packing cap and evaluation settings are the
recipe's own. Every trajectory is long (at least ten LLM calls), so a generation-budget defect (a fixed budget
that stops fitting in the context once the prompt grows) fails here; only the direct-generation recipes make their
one call.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from asearcher.cli import main
from asearcher.config import load_config
from tests.recipes.smoke import GOLD, GoldJudge, PolicyEngine
from tests.rl.test_system import ray_local  # noqa: F401  (module-scoped local Ray)

pytestmark = pytest.mark.usefixtures("ray_local")

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs/paper").glob("*.yaml"))
SHORT_PASSAGE_CHARS = 40
# smaller than the shared test model: the QwQ recipes train on two 41-call trajectories with 25k-character histories
SMOKE_MODEL_SIZES = dict(
    vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=1, max_position_embeddings=8192, tokenizer_corpus_lines=3000, seed=0,
)  # fmt: skip


def scaled(recipe: Path, model_dir: Path) -> list[str]:
    """The scale-down overrides (see the module docstring); everything else stays as the recipe says. A model id
    the recipe leaves to the user (`<required ...>`, e.g. the Search-R1 checkpoints) is set, as a user would."""
    from asearcher.eval.run import REQUIRED_MODEL

    models = load_config(recipe).models
    required = [
        f"models.{n}.model={model_dir}" for n, m in models.items() if m.model.startswith(REQUIRED_MODEL)
    ]
    return [
        *required,
        "engine.kind=transformers",
        f"engine.model={model_dir}",
        "tools.backend=local",
        "retrieval.backend=bm25",
        "rl.backend=torch",
        # the smoke's rollout engine is a scripted double without weights, so nothing could receive a broadcast
        # (the recipes' default): the broadcast itself is tested with the real engine in tests/rl/test_weight_broadcast.py
        "rl.weight_sync=object_store",
        "rl.trainer_gpus=0",
        "rl.rollout_gpus=0",
        "rl.rollout_workers=1",
        "rl.steps=1",
        "rl.batch_size=1",
        "rl.group_size=2",
        "rl.max_concurrent_rollouts=2",
        "rl.checkpoint_every=1",
        "rl.max_questions=2",
        "eval.max_samples=2",
        "eval.concurrency=4",
        "cluster.train_nodes=1",
        "cluster.gpus_per_node=1",
    ]


@pytest.fixture(scope="module")
def short_corpus_server(tmp_path_factory, corpus_file: Path):
    """A real retrieval server over the first 3000 mirror passages cut to SHORT_PASSAGE_CHARS characters, with short
    URLs, so long trajectories stay cheap to train on (the history window of the QwQ agent is 25k characters)."""
    from asearcher.errors import UserFacingError
    from asearcher.retrieval.java import find_java
    from asearcher.retrieval.service import running_server

    try:
        find_java()
    except UserFacingError as e:
        pytest.skip(f"no Java >= 21 for Pyserini: {e}")
    root = tmp_path_factory.mktemp("recipes")
    corpus = root / "corpus.jsonl"
    with open(corpus_file, encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
        for i, line in zip(range(3000), src, strict=False):
            row = json.loads(line)
            row["contents"] = row["contents"][:SHORT_PASSAGE_CHARS]
            row["url"] = f"w/{i}"
            dst.write(json.dumps(row) + "\n")
        gold = {
            "id": "gold-1",
            "contents": '"Hamlet"\nHamlet is a play by William Shakespeare.',
            "url": "w/gold",
        }
        dst.write(json.dumps(gold) + "\n")
    # in a subprocess: starting Pyserini's JVM inside a test worker that already runs Ray and torch threads can
    # crash the worker (seen: a segfault in the Lucene indexer)
    subprocess.run(
        [sys.executable, "-m", "asearcher.cli", "--no-progress", "index", "--corpus", str(corpus),
         "--output", str(root / "bm25")],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    with running_server(root / "bm25", corpus, addr_dir=root / "addr") as server:
        yield server


@pytest.fixture(scope="module")
def smoke_model_dir(tmp_path_factory, corpus_file: Path) -> Path:
    from asearcher.config import TinyModelConfig
    from asearcher.llm.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("recipes-model") / "tiny"
    build_tiny_model(corpus_file, out, TinyModelConfig(**SMOKE_MODEL_SIZES))
    return out


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes-train") / "questions.jsonl"
    path.write_text("".join(json.dumps({"qid": f"q{i}", "question": q, "answer": [a]}) + "\n"
                            for i, (q, a) in enumerate(GOLD.items())))  # fmt: skip
    return path


def _budget_ok(agent_cfg, prompt_len: int, budget: int) -> bool:
    mode = agent_cfg.call_budget
    if mode == "auto":
        mode = "context" if agent_cfg.kind == "asearcher-reasoning" else "fixed"
    if mode == "fixed":
        return budget == agent_cfg.max_new_tokens and prompt_len + budget <= agent_cfg.max_context_tokens
    return budget == min(agent_cfg.max_new_tokens, agent_cfg.max_context_tokens - prompt_len)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_and_evaluates_at_small_scale(
    recipe,
    smoke_model_dir,
    short_corpus_server,
    train_file,
    mirror_dir,
    tmp_path,
    monkeypatch,
):
    overrides = scaled(recipe, smoke_model_dir)
    cfg = load_config(recipe, overrides)
    sets = [a for o in overrides for a in ("--set", o)]
    base = ["--config", str(recipe), *sets, "--no-progress"]

    # 1. RL (not in the evaluation-only recipes, eval-*.yaml: rl.enabled false): one step of `asearcher train`
    if cfg.rl.enabled:  # with the recipe's agent, reward, staleness and packing cap
        out = tmp_path / "train"
        rc = main(["train", *base, "--model", str(smoke_model_dir), "--train", str(train_file), "--output", str(out),
                   "--retrieval-url", short_corpus_server.url,
                   "--rollout-factory", "tests.recipes.smoke:SmokeRolloutFactory"])  # fmt: skip
        assert rc == 0
        (row,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert row["train/n_trajs"] == 2 and math.isfinite(row["train/loss"]) and row["train/n_tokens"] > 0
        assert row["train/pack_untrained_frac"] == 0.0, (
            "the training cap drops tokens of the recipe's own trajectories"
        )
        assert row["turns_min"] >= 10, row  # long trajectories: the generation budget keeps them going
        assert (out / "final" / "config.json").exists()

    # 2. Evaluation with the recipe's protocol (k, temperature, metrics, judge) on two questions of a benchmark
    engines: list[PolicyEngine] = []

    def fake_engine(ec, **kw):
        from transformers import AutoTokenizer

        engines.append(PolicyEngine(AutoTokenizer.from_pretrained(smoke_model_dir), agent_cfg))
        return engines[-1]

    from asearcher.eval.run import eval_agent_config

    agent_cfg = eval_agent_config(cfg)
    monkeypatch.setattr("asearcher.llm.factory.make_engine", fake_engine)
    monkeypatch.setattr("asearcher.eval.judge.make_judge", lambda jc: GoldJudge())
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", short_corpus_server.url)
    bench = next(b for b in [*cfg.eval.benchmarks, "Bamboogle"] if b != "GAIA")  # GAIA is not in the mirror
    model = next(iter(cfg.models))
    eval_out = tmp_path / "eval"
    rc = main(["eval", *base, "--model", model, "--benchmark", bench, "--releases", str(mirror_dir),
               "--output", str(eval_out)])  # fmt: skip
    assert rc == 0
    agg = json.loads((eval_out / "aggregate.json").read_text())
    k = cfg.eval.k
    assert agg["k"] == k and agg["n"] == 2 and agg["protocol"]["temperature"] == cfg.eval.temperature
    expected = set(cfg.eval.metrics) | ({"judge"} if cfg.eval.judge.enabled else set())
    assert expected <= set(agg["metrics"]) and all(f"pass@{k}" in m for m in agg["metrics"].values())
    samples = [json.loads(x) for x in (eval_out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * k and all(s["status"] == "ok" for s in samples)
    (engine,) = engines
    # every sample a long trajectory (Search-R1: its 10 turns), but the direct agent's single call
    assert len(engine.requests) >= 2 * k * (1 if agent_cfg.kind == "direct" else 10)
    assert all(_budget_ok(agent_cfg, n, b) for _, n, b in engine.requests), "a call got the wrong budget"
