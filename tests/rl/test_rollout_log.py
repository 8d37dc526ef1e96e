"""Per-tool step metrics (searches / accesses / generated tokens / turns per trajectory) and saved rollouts
(OUTPUT/rollouts/v{version:05d}.jsonl.gz): format, sampling, resume, keyword counts (paper Fig. 6, 9, 10, 11)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from asearcher.agent.trajectory import ToolCall
from asearcher.config import ConfigError, RLConfig
from asearcher.config.rl import SaveRolloutsConfig
from asearcher.rl.system.metrics_log import (
    PER_TRAJECTORY,
    batch_metrics,
    rollout_metrics,
    trajectory_counts,
)
from asearcher.rl.system.rollout_log import (
    RolloutLog,
    count_keywords,
    iter_saved_rollouts,
    keyword_counts,
    rollout_path,
    saved_versions,
    select_samples,
)
from tests.rl.support import group, llm, traj

REPO = Path(__file__).resolve().parents[2]


def search(q="x", urls=("u1", "u2")):
    return ToolCall("search", q, True, [{"url": u, "contents": "c"} for u in urls])


def access(url="u1", page="page text"):
    return ToolCall("access", url, page is not None, page)


def hand_groups():
    """3 trajectories: (turns, searches, accesses, generated tokens) = (3,1,1,6), (1,0,0,4), (4,3,2,11)."""
    t1 = traj("a", [llm([1], [2, 3, 4]), search(), llm([1], [5, 6]), access(), llm([1], [7])], idx=0)
    t2 = traj("a", [llm([1], [2, 3, 4, 5])], idx=1)
    t3 = traj(
        "b",
        [
            llm([1], [2, 2]),
            search(),
            llm([1], [3, 3]),
            search(),
            llm([1], [4, 4]),
            search(),
            access(),
            access("u2", None),
            llm([1], [5, 5, 5, 5, 5]),
        ],
    )
    return [group("a", [(t1, 1.0), (t2, 0.0)]), group("b", [(t3, 0.5)])]


def test_batch_metrics_log_searches_accesses_tokens_and_turns_per_trajectory():
    m = batch_metrics(hand_groups(), train_version=0)
    expected = {
        "searches": (0, 4 / 3, 3),
        "accesses": (0, 1.0, 2),
        "tool_calls": (0, 7 / 3, 5),
        "tokens_per_traj": (4, 7.0, 11),  # generated (output) tokens
        "turns": (1, 8 / 3, 4),
    }
    for name, (lo, avg, hi) in expected.items():
        assert m[f"{name}_min"] == lo and m[f"{name}_max"] == hi, name
        assert m[f"{name}_avg"] == pytest.approx(avg), name
    assert m["n_trajectories"] == 3 and m["reward_mean"] == pytest.approx(0.5)


def test_rollout_metrics_cover_every_finished_trajectory_and_are_zero_without_any():
    trajs = [s.trajectory for g in hand_groups() for s in g.samples]
    m = rollout_metrics([1.0, 0.0, 0.5], [trajectory_counts(t) for t in trajs])
    assert m["rollout_trajectories"] == 3 and m["rollout_reward_mean"] == pytest.approx(0.5)
    assert (m["rollout_searches_min"], m["rollout_searches_max"]) == (0, 3)
    assert m["rollout_accesses_avg"] == pytest.approx(1.0) and m["rollout_tokens_per_traj_max"] == 11
    empty = rollout_metrics([], [])
    assert empty["rollout_trajectories"] == 0
    assert all(empty[f"rollout_{k}_{s}"] == 0.0 for k in PER_TRAJECTORY for s in ("min", "avg", "max"))


def test_save_rollouts_config_defaults_and_errors():
    c = RLConfig().save_rollouts
    assert (c.enabled, c.per_version, c.every, c.tool_results) == (True, 8, 1, False)
    with pytest.raises(ValueError):
        SaveRolloutsConfig(every=0)
    with pytest.raises(ValueError):
        SaveRolloutsConfig(per_versions=3)


def test_config_loader_names_a_bad_save_rollouts_key(tmp_path):
    from asearcher.config import load_config

    with pytest.raises(ConfigError, match="save_rollouts"):
        load_config(None, ["rl.save_rollouts.per_version=-1"])


def _batch(n_groups=3, g=2):
    out = []
    for q in range(n_groups):
        items = []
        for i in range(g):
            calls = [
                llm([1, 2], [3, 4], vers=[q, q + 1], text=f"Wait, q{q} s{i}. <search>who</search>"),
                search("who"),
                llm([1], [5], vers=[q + 1], text="<answer>x</answer>"),
            ]
            items.append((traj(f"q{q}", calls, idx=i), float(i)))
        grp = group(f"q{q}", items, submit_version=q)
        grp.meta["index"] = 10 + q
        out.append(grp)
    return out


def _read(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # gzip
    return [json.loads(line) for line in gzip.decompress(raw).decode().splitlines()]


def test_saved_file_is_gzip_jsonl_with_the_sampled_trajectories(tmp_path):
    log = RolloutLog(tmp_path, SaveRolloutsConfig(per_version=5), start_version=0)
    path = log.write(7, _batch())
    assert path == tmp_path / "rollouts" / "v00007.jsonl.gz" == rollout_path(tmp_path, 7)
    recs = _read(path)
    # round-robin over groups: sample 0 of each group, then sample 1 ...
    assert [(r["qid"], r["sample_idx"]) for r in recs] == [
        ("q0", 0),
        ("q1", 0),
        ("q2", 0),
        ("q0", 1),
        ("q1", 1),
    ]
    r = recs[3]
    assert (r["version"], r["step"], r["index"], r["reward"], r["submit_version"]) == (7, 8, 10, 1.0, 0)
    assert r["token_versions"] == [0, 1] and r["answers"] == ["a"]
    assert r["stats"] == {"turns": 2, "searches": 1, "accesses": 0, "tool_calls": 1, "tokens_per_traj": 3}
    assert [e["type"] for e in r["events"]] == ["llm", "tool", "llm"]
    assert r["events"][0]["text"].startswith("Wait, q0 s1") and r["events"][0]["tokens"] == 2
    assert r["events"][1] == {
        "type": "tool",
        "tool": "search",
        "argument": "who",
        "ok": True,
        "error": None,
        "urls": ["u1", "u2"],
    }
    # the whole batch when per_version exceeds it; tool results only on request
    log = RolloutLog(tmp_path / "all", SaveRolloutsConfig(per_version=100, tool_results=True))
    recs = _read(log.write(0, _batch()))
    assert len(recs) == 6 and recs[0]["events"][1]["result"][0] == {"url": "u1", "contents": "c"}
    assert list(iter_saved_rollouts(tmp_path / "all")) == recs


def test_every_and_per_version_choose_the_saved_versions(tmp_path):
    log = RolloutLog(tmp_path, SaveRolloutsConfig(per_version=1, every=3))
    for v in range(7):
        log.write(v, _batch())
    assert saved_versions(tmp_path) == [0, 3, 6]
    assert [len(_read(rollout_path(tmp_path, v))) for v in (0, 3, 6)] == [1, 1, 1]
    assert select_samples(_batch(), 0) == [] and select_samples([], 4) == []
    assert not RolloutLog(tmp_path / "none", SaveRolloutsConfig(per_version=0)).wants(0)


def test_resume_keeps_versions_before_the_checkpoint_and_drops_later_ones(tmp_path):
    log = RolloutLog(tmp_path, SaveRolloutsConfig(per_version=2))
    for v in range(5):
        log.write(v, _batch())
    kept = {v: rollout_path(tmp_path, v).read_bytes() for v in (0, 1, 2)}
    mtimes = {v: rollout_path(tmp_path, v).stat().st_mtime_ns for v in kept}
    (tmp_path / "rollouts" / ".v00005.jsonl.gz.abc.tmp").write_bytes(b"torn")  # a crashed write's temp
    # resumed from the checkpoint of step 3 (trainer version 3): versions 3, 4 are redone
    log = RolloutLog(tmp_path, SaveRolloutsConfig(per_version=2), start_version=3)
    assert sorted(p.name for p in (tmp_path / "rollouts").iterdir()) == [
        "v00000.jsonl.gz",
        "v00001.jsonl.gz",
        "v00002.jsonl.gz",
    ]
    assert {v: rollout_path(tmp_path, v).read_bytes() for v in kept} == kept
    assert {v: rollout_path(tmp_path, v).stat().st_mtime_ns for v in kept} == mtimes
    first = log.write(3, _batch()).read_bytes()
    log.write(3, _batch())  # a step redone twice still leaves one file, byte-identical (gzip mtime 0)
    assert saved_versions(tmp_path) == [0, 1, 2, 3]
    assert rollout_path(tmp_path, 3).read_bytes() == first
    assert [r["version"] for r in iter_saved_rollouts(tmp_path)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r["version"] for r in iter_saved_rollouts(tmp_path, versions=[1, 3])] == [1, 1, 3, 3]


def test_count_keywords_whole_words_case_insensitive_without_tags():
    text = "Wait... waiting? WAIT. Let me search. <search>search engines</search> double-check"
    assert count_keywords(text, ["wait", "search", "check", "double-check"]) == {
        "wait": 2,
        "search": 2,
        "check": 1,
        "double-check": 1,
    }
    assert count_keywords(text, ["search"], strip_tags=False) == {"search": 4}


def test_keyword_counts_per_version_from_saved_rollouts(tmp_path):
    def batch(texts):
        return [group("q", [(traj("q", [llm([1], [2], text=t)], idx=i), 0.0) for i, t in enumerate(texts)])]

    log = RolloutLog(tmp_path, SaveRolloutsConfig(per_version=8))
    log.write(0, batch(["wait", "nothing here"]))
    log.write(1, batch(["wait wait, check the source", "Wait. <search>source</search>", "check"]))
    kc = keyword_counts(tmp_path, ["wait", "check", "source"])
    assert kc == {
        0: {"trajectories": 2, "wait": 0.5, "check": 0.0, "source": 0.0},
        1: {"trajectories": 3, "wait": 1.0, "check": 2 / 3, "source": 2 / 3},
    }
    assert keyword_counts(tmp_path, ["wait"], per_trajectory=False)[1] == {"trajectories": 3, "wait": 3}
    assert keyword_counts(tmp_path / "no-run", ["wait"]) == {}
    with pytest.raises(ValueError, match="trajectories"):
        keyword_counts(tmp_path, ["trajectories"])


# ---- the controller hook, on real Ray actors with the table-policy doubles --------------------------------
def test_controller_logs_per_tool_rows_and_saves_rollouts_and_resumes_without_duplicates(tmp_path):
    import ray

    from tests.rl.doubles import SimFactory, run_sim_controller

    os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    # address="local": a private instance even when another Ray cluster runs on the machine
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", ignore_reinit_error=True
    )
    factory = SimFactory({"kind": "fixed", "turns": 3}, tokens_per_call=2)
    rows_q = [{"qid": f"q{i}", "question": f"Q{i}", "answers": ["a"]} for i in range(30)]
    cfg = RLConfig(
        batch_size=2,
        group_size=3,
        max_head_offpolicyness=0,
        max_concurrent_rollouts=4,
        rollout_workers=1,
        checkpoint_every=2,
        save_rollouts={"per_version": 4},
    )

    def run(out: Path, steps: int, resume: bool):
        return run_sim_controller(cfg, factory, rows_q, out, steps, resume=resume)[0]

    try:
        ref = run(tmp_path / "ref", 4, resume=False)
        out = tmp_path / "run"
        run(out, 4, resume=False)
        # as if the run had crashed before step 4's checkpoint: it resumes from step 2, and the files of the
        # versions trained after it (v00002, v00003) are dropped and written again, the earlier ones kept
        shutil.rmtree(out / "checkpoints" / "step_4")
        before = {v: rollout_path(out, v).read_bytes() for v in range(4)}
        resumed = run(out, 4, resume=True)
    finally:
        ray.shutdown()
    # 3 turns (LLM calls) and 2 searches each, 2 generated tokens per call: every count is known
    for r in ref.step_log:
        assert r["rollout_trajectories"] >= r["n_trajectories"] == 6  # filtered groups are counted too
        for prefix in ("", "rollout_"):
            for name, value in (("turns", 3), ("searches", 2), ("accesses", 0), ("tokens_per_traj", 6)):
                assert [r[f"{prefix}{name}_{s}"] for s in ("min", "avg", "max")] == [value] * 3
    assert [r["step"] for r in resumed.step_log] == [3, 4]
    assert saved_versions(tmp_path / "ref") == saved_versions(out) == [0, 1, 2, 3]
    for v in range(4):
        recs = _read(rollout_path(out, v))
        assert len(recs) == 4 and {r["version"] for r in recs} == {v}
        assert (
            rollout_path(out, v).read_bytes() == rollout_path(tmp_path / "ref", v).read_bytes() == before[v]
        )
    batches = {r["version"]: r["batch_indices"] for r in ref.step_log}
    for rec in iter_saved_rollouts(out):
        assert rec["index"] in batches[rec["version"] + 1]
        assert rec["token_versions"] == [rec["version"]]  # eta = 0: generated by the version trained from
