"""`asearcher eval` (tiny transformers model, real retrieval server) killed with SIGKILL at a random point after
its first finished sample, then rerun: the same (id, sample) rows as an uninterrupted run, each exactly once;
the samples finished before the kill are kept as they were (not redone); greedy decoding gives the same
predictions. The kill point comes from a seeded RNG, named in every assertion (ASEARCHER_FAULT_SEED=N replays).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.fixtures.faults import fault_seed, kill_when

N_QUESTIONS, K = 4, 2


def _cmd(out: Path, tiny_model_dir: Path, mirror_dir: Path, tmp_path: Path) -> list[str]:
    sets = {
        "engine.model": tiny_model_dir,
        "results_dir": tmp_path,
        "eval.k": K,
        "eval.temperature": 0,  # greedy: an uninterrupted run and a resumed one must agree sample by sample
        "eval.concurrency": 1,  # one sequence at a time: no batching, so decoding is the same in every run
        "eval.agent.max_turns": 2,
        "eval.agent.max_new_tokens": 8,
    }
    argv = [sys.executable, "-m", "asearcher.cli", "--no-progress", "eval", "--model", "tiny"]
    argv += ["--benchmark", "Bamboogle", "--releases", str(mirror_dir), "--output", str(out)]
    argv += ["--max-samples", str(N_QUESTIONS)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    return argv


def _complete_rows(path: Path) -> list[dict]:
    """The rows a resume reads back: whole lines only (a torn last line is cut on resume)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def _key(r: dict) -> tuple[str, int]:
    return (str(r["id"]), int(r["sample"]))


def test_eval_killed_at_a_random_point_then_rerun(tmp_path, tiny_model_dir, retrieval_server, mirror_dir):
    env = {**os.environ, "ASEARCHER_RETRIEVAL_URL": retrieval_server.url}
    ref, out = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run(
        _cmd(ref, tiny_model_dir, mirror_dir, tmp_path), env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    want = _complete_rows(ref / "samples.jsonl")
    assert len(want) == N_QUESTIONS * K and len({_key(x) for x in want}) == N_QUESTIONS * K

    seed = fault_seed()
    rng = random.Random(seed)
    # after the n-th finished sample, plus a fraction of one sample's time (~0.1-0.3 s here)
    after_rows, extra_s = rng.randint(1, N_QUESTIONS * K - 1), rng.uniform(0, 0.15)
    with open(tmp_path / "killed.log", "wb") as err:  # a file, not a pipe: the child must never block on it
        proc = subprocess.Popen(
            _cmd(out, tiny_model_dir, mirror_dir, tmp_path),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    finished = kill_when(proc, lambda: len(_complete_rows(out / "samples.jsonl")) >= after_rows, extra_s)
    before = {_key(x): x for x in _complete_rows(out / "samples.jsonl")}
    complete = (out / "aggregate.json").exists()  # the kill came as the process was exiting
    state = "finished before" if finished else "killed after the run was complete" if complete else "killed"
    msg = f"seed {seed}: {state} {extra_s:.2f}s after row {after_rows}; {len(before)} complete rows then"
    print(msg)  # where the kill landed (shown with -rP)

    r = subprocess.run(
        _cmd(out, tiny_model_dir, mirror_dir, tmp_path), env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, f"{msg}\n{r.stderr[-3000:]}"
    got = _complete_rows(out / "samples.jsonl")
    # nothing lost, nothing twice
    assert sorted(_key(x) for x in got) == sorted(_key(x) for x in want), msg
    # the rerun did only the missing samples: those finished before the kill are the very same rows
    if before and not complete:
        assert f"resuming, {len(before)} of {N_QUESTIONS * K} samples already done" in r.stderr, msg
    by_key = {_key(x): x for x in got}
    for key, row in before.items():
        assert by_key[key] == row, f"{msg}: {key} was redone"
    # greedy decoding: the same predictions as the uninterrupted run
    ref_pred = {_key(x): x["prediction"] for x in want}
    assert {k: x["prediction"] for k, x in by_key.items()} == ref_pred, msg
    trajs = _complete_rows(out / "trajectories.jsonl")
    assert sorted(_key(t) for t in trajs) == sorted(by_key), msg  # one trajectory per sample
    agg, agg_ref = (json.loads((d / "aggregate.json").read_text()) for d in (out, ref))
    assert agg["metrics"] == agg_ref["metrics"] and agg["n_samples"] == N_QUESTIONS * K, msg
