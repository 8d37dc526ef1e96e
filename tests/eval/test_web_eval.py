"""Evaluation in the web setting: the protocol card (tools, reader, judge, benchmark edition), the recording folder
inside the eval output, the paper's web evaluation configs, and record-then-replay end to end: an evaluation on the
local web of a real retrieval server records every tool response; replayed with the server stopped, it writes the
same trajectories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asearcher.cli import main
from asearcher.config import load_config
from asearcher.eval.protocol import benchmark_edition, build_card, check_resumable, file_sha256
from asearcher.eval.registry import get_benchmark
from asearcher.eval.run import RECORDINGS, retriever_info, tools_card, web_record_dir
from asearcher.utils.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]
WEB = ["tools.backend=web", "tools.web.search_url=local", "tools.web.reader=direct"]
XBENCH_2505 = "10bdb81321e3d919c052c2c9a7095868d8bc9036f719fb25d9223043aa28c118"
TIME_KEYS = {"t_start", "t_end", "generate_s", "tool_s", "time_s"}


def _card(**kw):
    base = dict(
        model_name="m", engine={"kind": "x"}, agent={}, prompt_hash="h", retriever={}, search_backend="web:serper+jina",
        judge="Qwen/Qwen2.5-72B-Instruct", temperature=0.6, top_p=0.95, max_new_tokens=8, k=4, seeds=[1, 2, 3, 4],
        benchmark="B", benchmark_file=None, n_questions=1, sealed=False, version="test",
    )  # fmt: skip
    return build_card(**{**base, **kw})


# ---- the card ------------------------------------------------------------------------------------------------------
def test_xbench_card_names_the_edition(tmp_path, mirror_dir):
    spec = get_benchmark("xbench")
    assert spec.editions == {XBENCH_2505: "2505"} and spec.paper_edition == "2505"
    release = mirror_dir / "ASearcher-test-data" / "xbench-deepsearch" / "DeepSearch-2505.csv"
    card = _card(benchmark=spec.name, benchmark_file=release, editions=spec.editions, paper_edition="2505")
    assert card["benchmark"] == {
        "name": "xBench-DeepSearch", "file": "DeepSearch-2505.csv", "sha256": XBENCH_2505,
        "edition": "2505", "paper_edition": "2505", "comparable_with_paper": True,
    }  # fmt: skip
    later = tmp_path / "DeepSearch-2510.csv"
    later.write_text("id,prompt,answer\n1,q,a\n")
    card = _card(benchmark=spec.name, benchmark_file=later, editions=spec.editions, paper_edition="2505")
    assert card["benchmark"]["sha256"] == file_sha256(later)
    assert card["benchmark"]["edition"] == "unknown" and card["benchmark"]["comparable_with_paper"] is False
    # benchmarks with one edition keep the plain {name, file, sha256}
    assert benchmark_edition("abc", {}, None) == {}
    assert "edition" not in _card()["benchmark"]


def test_card_names_search_reader_and_judge():
    cfg = load_config(REPO / "configs/paper/eval-web-gaia-xbench-frames.yaml")
    card = _card(tools=tools_card(cfg), tools_details={"record": {"mode": "record", "dir": "/x"}})
    assert card["tools"] == {
        "backend": "web",
        "search": {"api": "serper-compatible", "url": "https://google.serper.dev/search"},
        "reader": {"kind": "jina", "url": "https://r.jina.ai/"},
    }
    assert card["judge"] == "Qwen/Qwen2.5-72B-Instruct" and card["search_backend"] == "web:serper+jina"
    local = load_config(None, WEB)
    assert tools_card(local)["search"]["url"].startswith("local web") and tools_card(local)["reader"] == {
        "kind": "direct"
    }
    assert tools_card(load_config(None))["backend"] == "local"
    # no local index behind a search API; the local web searches the local index
    assert retriever_info(cfg) == {"backend": "web", "topk": 5}
    assert retriever_info(local)["backend"] == "bm25"
    # resume: the tools must match; a card saved before the card named them still resumes
    check_resumable(card, card, "here")
    with pytest.raises(Exception, match="tools"):
        check_resumable(card, {**card, "tools": tools_card(local)}, "here")
    check_resumable({k: v for k, v in card.items() if k != "tools"}, card, "here")
    # the tools' own description (record folder, ports of the local web) may differ on resume
    check_resumable(card, {**card, "tools_details": {"record": {"mode": "replay"}}}, "here")


def test_recordings_go_into_the_eval_output(tmp_path):
    out = tmp_path / "out"
    assert web_record_dir(load_config(None), out) is None  # local tools
    assert web_record_dir(load_config(None, WEB), out) is None  # record: off
    assert web_record_dir(load_config(None, [*WEB, "tools.web.record=record"]), out) == out / RECORDINGS
    assert web_record_dir(load_config(None, [*WEB, "tools.web.record=replay"]), out) == out / RECORDINGS
    chosen = load_config(None, [*WEB, "tools.web.record=replay", f"tools.web.record_dir={tmp_path}"])
    assert web_record_dir(chosen, out) is None  # the config's folder stands


@pytest.mark.parametrize("name", ["eval-web-gaia-xbench-frames", "eval-web-qa"])
def test_paper_web_eval_configs(name, capsys):
    path = REPO / "configs/paper" / f"{name}.yaml"
    assert main(["config", "check", "--config", str(path)]) == 0
    cfg = load_config(path)
    assert cfg.tools.backend == "web" and cfg.tools.web.reader == "jina" and cfg.tools.web.record == "record"
    assert cfg.tools.web.search_url == "https://google.serper.dev/search"
    assert cfg.eval.k == 4 and cfg.eval.judge.enabled and cfg.eval.judge.model == "Qwen/Qwen2.5-72B-Instruct"
    assert not cfg.rl.enabled and cfg.retrieval.enabled is False  # evaluation only, nothing local
    benchmarks = {get_benchmark(b).name for b in cfg.eval.benchmarks}
    if name == "eval-web-qa":
        assert benchmarks == {"2Wiki", "HotpotQA", "Bamboogle", "MuSiQue", "NQ", "TriviaQA", "PopQA"}
    else:
        assert benchmarks == {"GAIA", "xBench-DeepSearch", "Frames"}
        assert all(get_benchmark(b).metrics == ["judge"] for b in benchmarks)
    assert cfg.models and all(m.model.startswith("inclusionAI/") for m in cfg.models.values())


# ---- record, then replay with the server stopped --------------------------------------------------------------------
def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k not in TIME_KEYS}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def _normalised(path: Path) -> bytes:
    """The file's rows without wall-clock fields (they differ between any two runs), serialised again."""
    return b"".join(
        json.dumps(_without_times(json.loads(line)), ensure_ascii=False).encode() + b"\n"
        for line in path.read_bytes().splitlines()
    )


@pytest.mark.java
def test_record_then_replay_without_the_server(
    tmp_path, bm25_index, corpus_file, pages_file, mirror_dir, tiny_model_dir, monkeypatch
):
    from transformers import AutoTokenizer

    from asearcher.eval.loaders import load_benchmark
    from asearcher.retrieval.service import running_server
    from tests.eval.web_doubles import BrowsingEngine

    rows = load_benchmark("Bamboogle", mirror_dir / "ASearcher-test-data", limit=4)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    questions = {str(r["id"]): r["question"] for r in rows}
    monkeypatch.setattr(
        "asearcher.llm.factory.make_engine", lambda ec, **kw: BrowsingEngine(tok, questions=questions)
    )
    sets = [*WEB, "eval.k=1", "eval.concurrency=1", "agent.allow_access=true", "eval.agent.max_turns=8",
            "eval.agent.max_new_tokens=64", "agent.max_context_tokens=100000", f"results_dir={tmp_path}"]  # fmt: skip
    base = ["eval", "--model", "browser", "--benchmark", "Bamboogle", "--releases", str(mirror_dir),
            "--no-progress", *(a for s in sets for a in ("--set", s))]  # fmt: skip

    recorded = tmp_path / "recorded"
    with running_server(bm25_index, corpus_file, pages_file, addr_dir=tmp_path / "addr") as server:
        monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", server.url)
        argv = [*base, "--max-samples", "3", "--output", str(recorded), "--set", "tools.web.record=record"]
        assert main(argv) == 0
        process = server.process
    assert process.poll() is not None  # the local web is gone from here on
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL")

    agg = json.loads((recorded / "aggregate.json").read_text())
    assert agg["n"] == 3 and agg["errors"] == 0 and agg["tool_failures"] == 0
    assert agg["stats"]["avg_searches"] == 1.0 and agg["stats"]["avg_accesses"] == 1.0
    card = agg["protocol"]
    assert card["search_backend"] == "web:local+direct" and card["tools"]["reader"] == {"kind": "direct"}
    assert card["tools_details"]["record"]["mode"] == "record"
    assert (recorded / RECORDINGS).is_dir() and any((recorded / RECORDINGS).iterdir())
    for t in read_jsonl(recorded / "trajectories.jsonl"):
        tools = [e for e in t["trajectory"]["events"] if e["type"] == "tool"]
        assert [e["tool"] for e in tools] == ["search", "access"] and all(e["ok"] for e in tools)
        assert all(h["url"].startswith(server.url + "/wiki/") for h in tools[0]["result"])
        assert tools[1]["argument"] == tools[0]["result"][0]["url"] and len(tools[1]["result"]) > 100

    replayed = tmp_path / "replayed"
    replay = ["--set", "tools.web.record=replay", "--set", f"tools.web.record_dir={recorded / RECORDINGS}"]
    assert main([*base, "--max-samples", "3", "--output", str(replayed), *replay]) == 0
    assert _normalised(replayed / "trajectories.jsonl") == _normalised(recorded / "trajectories.jsonl")
    assert _normalised(replayed / "samples.jsonl") == _normalised(recorded / "samples.jsonl")
    again = json.loads((replayed / "aggregate.json").read_text())
    assert again["metrics"] == agg["metrics"] and again["protocol"]["tools"] == card["tools"]
    assert again["protocol"]["tools_details"]["record"]["mode"] == "replay"

    # a question the recording never saw: its search fails clearly (a tool error the agent gets), nothing runs live
    more = tmp_path / "more"
    assert main([*base, "--max-samples", "4", "--output", str(more), *replay]) == 0
    last = read_jsonl(more / "trajectories.jsonl")[-1]["trajectory"]
    failed = [e for e in last["events"] if e["type"] == "tool" and not e["ok"]]
    assert failed and "replay: no recorded search response" in failed[0]["error"]
    assert json.loads((more / "aggregate.json").read_text())["tool_failures"] >= 1
