"""Cross-section consistency checks (`asearcher config check`, the Snakefile at start-up, `asearcher train`), the
training cap against the agent's context, and tool backends that cannot run yet (issue 9, items 2 and 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asearcher.cli import main
from asearcher.config import load_config
from asearcher.config.checks import ConfigCheckError, check_config, require_consistent
from asearcher.errors import UserFacingError
from asearcher.rl.algo.batching import build_sequences
from asearcher.tools.factory import make_tools, require_tools_backend, setting_label
from tests.rl.support import group, llm, traj

REPO = Path(__file__).resolve().parents[2]
# run configs (configs/sweeps/ holds sweep tables, validated by tests/workflow/test_sweeps.py)
RECIPES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "sweeps" not in p.parts)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_is_consistent(path):
    errors = [p for p in check_config(load_config(path)) if p.level == "error"]
    assert errors == []


def test_training_cap_below_the_agent_context_names_both_keys(tmp_path, capsys):
    # the paper recipes before the fix: agents allow 28000 tokens, the trainer cap stayed at its 8192 default
    cfg = load_config(REPO / "configs/paper/asearcher-local-7b.yaml", ["rl.max_tokens_per_mb=8192"])
    with pytest.raises(ConfigCheckError) as e:
        require_consistent(cfg)
    assert "rl.max_tokens_per_mb, agent.max_context_tokens" in str(e.value) and "8192" in str(e.value)
    cfg = load_config(None, ["rl.pack_max_tokens=100", "agent.max_context_tokens=200"])
    (p,) = [p for p in check_config(cfg) if p.level == "error"]
    assert p.keys == ("rl.pack_max_tokens", "agent.max_context_tokens")
    assert not [p for p in check_config(load_config(None, ["rl.enabled=false", "rl.pack_max_tokens=100"]))
                if p.level == "error"]  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"rl": {"max_tokens_per_mb": 1000}, "agent": {"max_context_tokens": 4000}}))
    assert main(["config", "check", "--config", str(bad)]) == 2
    assert "rl.max_tokens_per_mb, agent.max_context_tokens" in capsys.readouterr().err
    assert main(["config", "check", "--config", str(REPO / "configs/default.yaml")]) == 0


def test_groups_must_fit_in_flight():
    cfg = load_config(None, ["rl.group_size=16", "rl.max_concurrent_rollouts=8"])
    assert any(p.keys == ("rl.max_concurrent_rollouts", "rl.group_size") for p in check_config(cfg))


def test_step_metrics_count_dropped_and_cut_calls():
    cfg = load_config(None, ["rl.pack_max_tokens=16"]).rl
    P = list(range(1, 11))  # a 10-token prompt
    t = traj(
        "q", [llm(P, [50, 51]), llm(P + [50, 51, 52], [60, 61, 62, 63]), llm(list(range(100, 116)), [70])]
    )
    _, info = build_sequences([group("q", [(t, 1.0), (traj("q", [llm(P, [50])], idx=1), 0.0)])], cfg)
    # call 2 (13 + 4 > 16) loses 1 token, call 3 (prompt 16 >= 16) is dropped whole: 2 of 8 generated tokens
    assert info["pack_truncated_calls"] == 1 and info["pack_skipped_calls"] == 1
    assert info["pack_truncated_tokens"] == 2 and info["pack_untrained_frac"] == pytest.approx(2 / 8)


def test_web_backend_without_keys_is_an_error_at_start_up_never_a_local_fallback(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    web = load_config(REPO / "configs/paper/asearcher-web-7b.yaml")
    assert setting_label(web) == "asearcher-web-top5"  # the label names the backend, not the unused index
    assert setting_label(load_config(None)).endswith("-bm25-top5")
    with pytest.raises(UserFacingError, match=r"\$SERPER_API_KEY .* is not set"):
        require_tools_backend(web)
    with pytest.raises(UserFacingError, match="SERPER_API_KEY"):
        make_tools(web, base_url="http://127.0.0.1:9")
    train = tmp_path / "t.jsonl"
    train.write_text('{"qid": "q", "question": "?", "answer": ["a"]}\n')
    rc = main(["train", "--config", str(REPO / "configs/paper/asearcher-web-7b.yaml"), "--model", "m",
               "--train", str(train), "--output", str(tmp_path / "o"), "--retrieval-url", "http://127.0.0.1:9"])  # fmt: skip
    assert rc == 2 and "SERPER_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # stopped before anything was written
