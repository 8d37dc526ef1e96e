"""`asearcher synth` as a run: outputs, training consumes them, resume after SIGKILL, refusals, the real engines."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asearcher.errors import UserFacingError
from asearcher.rl.system.dataset import load_train_rows
from asearcher.synth.run import synthesize
from asearcher.synth.scripted import ScriptedEngine, _fenced
from tests.fixtures.faults import fault_seed

REPO = Path(__file__).resolve().parents[2]


def _run(cfg, out, pages, engine=None, **kw):
    engine = engine or ScriptedEngine()
    return asyncio.run(synthesize(cfg, out, pages, reasoner_engine=engine, instruct_engine=engine, **kw))


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_outputs_and_training_reads_them(tmp_path, wiki_pages, synth_cfg):
    cfg = synth_cfg(num_seeds=3, max_turns=4, max_variants_per_seed=2)
    stats = _run(cfg, tmp_path / "out", wiki_pages)
    out = tmp_path / "out"
    recs = _records(out)
    assert len(recs) == stats["seeds"]["finished"] == 3 and len({r["seed_id"] for r in recs}) == 3
    for r in recs:
        assert {"qa", "relevant", "statements", "edit_history", "qa_history", "provenance"} <= set(r)
        assert set(r["provenance"]["prompts_sha256"]) >= {"fuzz", "compose_qa", "check_valid"}
        assert all({"name", "url", "summary", "information_points"} <= set(p) for p in r["relevant"])
    rows = load_train_rows([out / "train.jsonl"])
    assert len(rows) == stats["yield"]["selected"] == 2 * 3  # every edit needs tools with the default script
    assert all(r["qid"].startswith("synth:page:") for r in rows)
    # the released file and the synthesized one together: nothing dropped, ids unique
    both = load_train_rows([out / "train.jsonl", out / "train.jsonl"])
    assert len(both) == 12 and len({r["qid"] for r in both}) == 12
    assert stats["selected_questions"]["mean_injections"] is not None
    assert (out / "stats.png").stat().st_size > 1000
    run = json.loads((out / "run.json").read_text())
    assert run["planned_seeds"] == 3 and run["judge"]["prompt"] == "judge.txt"


def test_malformed_output_never_crashes_the_run_and_is_counted(tmp_path, wiki_pages, synth_cfg):
    eng = ScriptedEngine({"summarize_page": "I cannot do that.", "judge": "maybe"})
    stats = _run(synth_cfg(num_seeds=2, max_retries=1), tmp_path / "out", wiki_pages, eng)
    assert stats["seeds"]["rejected_by_reason"] == {"summarize_page:no_json": 2}
    assert stats["yield"]["selected"] == 0 and "no question was selected" in stats["note"]
    assert (tmp_path / "out/train.jsonl").read_text() == ""


def test_resume_refuses_other_settings(tmp_path, wiki_pages, synth_cfg):
    _run(synth_cfg(num_seeds=1, max_turns=2), tmp_path / "out", wiki_pages)
    with pytest.raises(UserFacingError, match="n_direct|settings"):
        _run(synth_cfg(num_seeds=1, max_turns=2, n_direct=5), tmp_path / "out", wiki_pages)
    # more seeds with the same settings: only the new ones run
    eng = ScriptedEngine()
    _run(synth_cfg(num_seeds=2, max_turns=2), tmp_path / "out", wiki_pages, eng)
    assert len(_records(tmp_path / "out")) == 2 and eng.calls["base_qa"] == 1


def test_a_seed_that_errors_is_not_recorded_and_reruns(tmp_path, wiki_pages, synth_cfg, monkeypatch):
    from asearcher.synth.agent import SynthesisAgent

    real = SynthesisAgent.grow
    calls = {"n": 0}

    async def flaky(self, seed):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return await real(self, seed)

    monkeypatch.setattr(SynthesisAgent, "grow", flaky)
    with pytest.raises(UserFacingError, match="1 seed.*rerunning"):
        _run(synth_cfg(num_seeds=2, max_turns=2), tmp_path / "out", wiki_pages)
    assert len(_records(tmp_path / "out")) == 1
    stats = _run(synth_cfg(num_seeds=2, max_turns=2), tmp_path / "out", wiki_pages)
    assert len(_records(tmp_path / "out")) == 2 and stats["errors"]["seeds"] == 0


_CHILD = """
import asyncio, json, sys
from asearcher.config import load_config
from asearcher.synth.run import synthesize
from asearcher.synth.scripted import ScriptedEngine
cfg = load_config(None, json.loads(sys.argv[3]))
eng = ScriptedEngine(latency_s=0.02)
asyncio.run(synthesize(cfg, sys.argv[1], sys.argv[2], reasoner_engine=eng, instruct_engine=eng))
"""


def _child(out, pages, overrides):
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(out), str(pages), json.dumps(overrides)],
        cwd=REPO, env={**os.environ, "ASEARCHER_NO_PROGRESS": "1"}, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path, wiki_pages):
    overrides = ["synth.seeds=pages", "synth.num_seeds=5", "synth.max_turns=4", "synth.n_direct=3",
                 "synth.max_in_flight=2"]  # fmt: skip
    ref = tmp_path / "ref"
    assert _child(ref, wiki_pages, overrides).wait(120) == 0
    out = tmp_path / "out"
    seed = fault_seed()
    delay = random.Random(seed).uniform(0.0, 0.5)
    proc = _child(out, wiki_pages, overrides)
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline and proc.poll() is None
    ):  # kill once a record is on disk, at a random delay
        if (out / "records.jsonl").exists() and (out / "records.jsonl").stat().st_size:
            time.sleep(delay)
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before the kill"
    partial = len((out / "records.jsonl").read_text().splitlines())
    assert 1 <= partial < 5
    assert _child(out, wiki_pages, overrides).wait(120) == 0, (
        f"ASEARCHER_FAULT_SEED={seed}: rerun failed (killed after {delay:.2f}s)"
    )

    def by_seed(d):
        rows = _records(d)
        assert len(rows) == len({r["seed_id"] for r in rows}), "a seed was written twice"
        # per-seed call counts may differ: a page already extracted before the kill is extracted again
        return {r["seed_id"]: {k: v for k, v in r.items() if k != "calls"} for r in rows}

    assert by_seed(out) == by_seed(ref), (
        f"ASEARCHER_FAULT_SEED={seed}: killed after {delay:.2f}s with {partial} records"
    )
    assert (out / "train.jsonl").read_bytes() == (ref / "train.jsonl").read_bytes()


@pytest.mark.java
def test_qa_seeds_take_statements_from_the_real_retrieval_server(
    tmp_path, retrieval_server, pages_file, mirror_dir
):
    from asearcher.config import load_config

    qa = tmp_path / "qa.jsonl"  # questions whose answers the mirror's passages state
    qa.write_text(
        json.dumps(
            {
                "qid": "a",
                "question": "Who was the first president of the City Bank of New York?",
                "answer": ["Samuel Osgood"],
            }
        )
        + "\n"  # fmt: skip
        + json.dumps({"qid": "b", "question": "zzqx unanswerable?", "answer": ["Qwertyuiop Zxcvb"]})
        + "\n"
    )
    cfg = load_config(None, ["synth.seeds=qa", "synth.num_seeds=2", "synth.max_turns=2", "synth.n_direct=2"])
    client = retrieval_server.client(timeout_s=30)
    stats = _run(cfg, tmp_path / "out", pages_file, qa_path=qa, retrieval=client)
    recs = {r["seed_id"]: r for r in _records(tmp_path / "out")}
    assert any("Samuel Osgood" in s for s in recs["qa:a"]["statements"])
    assert recs["qa:a"]["relevant"] and recs["qa:a"]["status"] == "done"
    assert recs["qa:b"]["reason"] == "no_support"
    assert stats["seeds"]["by_kind"] == {"qa": 2}


def test_cli_with_the_tiny_model(tmp_path, tiny_model_dir, wiki_pages):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"engine: {{kind: transformers, model: {tiny_model_dir}}}\n"
        "synth: {seeds: pages, num_seeds: 2, max_turns: 2, n_direct: 2, max_new_tokens: 16, "
        "instruct_max_new_tokens: 16, direct_max_new_tokens: 8, max_retries: 0}\n"
    )
    cmd = [sys.executable, "-m", "asearcher.cli", "--no-progress", "synth", "--config", str(cfg),
           "--pages", str(wiki_pages), "--output", str(tmp_path / "out")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert stats["seeds"]["finished"] == 2 and stats["calls"]["instruct.summarize_page"] >= 2
    assert sum(stats["seeds"]["rejected_by_reason"].values()) + stats["seeds"]["grown"] == 2
    # a second run finds every seed done and calls no model
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert (
        r.returncode == 0 and json.loads((tmp_path / "out/stats.json").read_text())["seeds"] == stats["seeds"]
    )


def test_cli_help_and_missing_seed_file(tmp_path, wiki_pages, capsys):
    from asearcher.cli import main

    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "records.jsonl" in capsys.readouterr().out
    rc = main(["synth", "--pages", str(wiki_pages), "--output", str(tmp_path / "o"), "--set", "synth.seeds=qa",
               "--set", "synth.qa_file=nope.jsonl"])  # fmt: skip
    assert rc == 2 and "synth.qa_file: nope.jsonl not found" in capsys.readouterr().err


def test_bad_seed_rows_name_file_and_line(tmp_path):
    from asearcher.synth.seeds import load_qa_seeds
    from asearcher.utils.jsonl import DataError

    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"question": "Q?", "answer": "A"}) + "\n" + json.dumps({"question": "R?"}) + "\n")
    with pytest.raises(DataError, match=r"s.jsonl:2: a seed needs a non-empty 'answer'"):
        load_qa_seeds(p)
    hot = tmp_path / "h.json"
    hot.write_text(json.dumps([{"_id": "x", "question": "Q?", "answer": "A",
                                "supporting_facts": [["T1", 1], ["T2", 0]],
                                "context": [["T1", ["s0", "s1 fact."]], ["T2", ["t0 fact."]]]}]))  # fmt: skip
    (seed,) = load_qa_seeds(hot)
    assert seed.id == "qa:x" and seed.statements == ["s1 fact.", "t0 fact."] and len(seed.urls) == 2
    assert _fenced({"a": 1}).startswith("```json")
