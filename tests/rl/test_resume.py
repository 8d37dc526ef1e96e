"""Resumability: the question stream's cursor, and `asearcher train` killed with SIGKILL then rerun."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asearcher.rl.system.dataset import QuestionStream, load_train_rows
from asearcher.utils.jsonl import DataError
from tests.fixtures.faults import fault_seed
from tests.rl.doubles import write_questions

REPO = Path(__file__).resolve().parents[2]


def _rows(n):
    return [{"qid": f"q{i}", "question": f"Q{i}", "answers": ["a"]} for i in range(n)]


def test_stream_is_epochwise_permutation_and_seeded():
    s = QuestionStream(_rows(7), seed=3)
    draws = [s.next() for _ in range(21)]
    for e in range(3):
        assert sorted(q.row for q in draws[7 * e : 7 * e + 7]) == list(range(7))
    assert [q.index for q in draws] == list(range(21))
    assert [q.row for q in draws[:7]] != [q.row for q in draws[7:14]]  # reshuffled per epoch
    again = QuestionStream(_rows(7), seed=3)
    assert [again.next().row for _ in range(21)] == [q.row for q in draws]
    other = QuestionStream(_rows(7), seed=4)
    assert [other.next().row for _ in range(7)] != [q.row for q in draws[:7]]


def test_stream_state_resumes_with_requeued_questions_first():
    s = QuestionStream(_rows(5), seed=1)
    for _ in range(8):
        s.next()
    st = json.loads(json.dumps(s.state(in_flight=[6, 5])))
    r = QuestionStream(_rows(5), seed=1)
    r.load_state(st)
    assert [r.next().index for _ in range(4)] == [5, 6, 8, 9]
    with pytest.raises(DataError, match="rows"):
        QuestionStream(_rows(6), seed=1).load_state(st)


def test_load_train_rows_release_format_and_errors(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text(
        json.dumps({"qid": "x", "question": "Q?", "answer": ["A"], "aug_answer": ["B"]})
        + "\n"
        + json.dumps({"id": "y", "question": "R?", "answer": "C", "source": "compose_chain_qa_invalid"})
        + "\n"
    )
    rows = load_train_rows(p)
    assert rows[0] == {"qid": "x", "question": "Q?", "answers": ["A"], "aug_answers": ["B"], "invalid": False}
    assert rows[1]["answers"] == ["C"] and rows[1]["qid"] == "y" and rows[1]["invalid"]
    p.write_text(json.dumps({"qid": "x", "question": "Q?"}) + "\n")
    with pytest.raises(DataError, match=r"t.jsonl:1: missing field 'answer'"):
        load_train_rows(p)


def _train_cmd(out: Path, train: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "asearcher.cli",
        "train",
        "--model",
        "unused",
        "--train",
        str(train),
        "--output",
        str(out),
        "--no-progress",
        "--rollout-factory",
        "tests.rl.doubles:cli_rollout_factory",
        "--trainer-factory",
        "tests.rl.doubles:cli_trainer",
        "--set",
        f"rl.steps={steps}",
        "--set",
        "rl.batch_size=3",
        "--set",
        "rl.group_size=3",
        "--set",
        "rl.max_head_offpolicyness=0",
        "--set",
        "rl.rollout_workers=2",
        "--set",
        "rl.checkpoint_every=2",
        "--set",
        "rl.max_concurrent_rollouts=8",
    ]


def _env(token_delay: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # always a private local Ray
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["SIM_TOKEN_DELAY"] = str(token_delay)
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def _steps(out: Path) -> list[tuple[int, list[int]]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["batch_indices"]) for r in rows]


@pytest.mark.parametrize("outputs_removed", [False, True], ids=["log-kept", "log-removed"])
def test_sigkill_then_rerun_continues_without_losing_or_repeating_steps(tmp_path, outputs_removed):
    """Killed mid-run, then rerun: the same steps as an uninterrupted run. 'log-removed' also deletes the metric
    logs before the rerun, as Snakemake does with the outputs of a failed job: the checkpoint restores them."""
    train = write_questions(tmp_path / "train.jsonl", 10)
    steps = 6
    ref = tmp_path / "ref"
    subprocess.run(
        _train_cmd(ref, train, steps), cwd=REPO, env=_env(0.0), check=True, timeout=180, capture_output=True
    )

    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(out, train, steps),
        cwd=REPO,
        env=_env(0.05),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # killed at a random point after the first checkpoint: mid-step, mid-rollout or mid-checkpoint-write
    seed = fault_seed()
    delay = random.Random(seed).uniform(0.0, 1.0)
    why = f"ASEARCHER_FAULT_SEED={seed}: killed {delay:.2f}s after the step-2 checkpoint"
    deadline = time.time() + 150
    try:
        while not (out / "checkpoints" / "step_2" / "state.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.05)
        time.sleep(delay)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started (its own session)
        proc.wait()
    assert not (out / "final").exists(), why  # it really died mid-run
    killed_steps = [s for s, _ in _steps(out)]
    assert killed_steps and max(killed_steps) < steps, why
    if outputs_removed:
        (out / "metrics.jsonl").unlink()
        (out / "metrics.csv").unlink()

    r = subprocess.run(
        _train_cmd(out, train, steps), cwd=REPO, env=_env(0.0), timeout=180, capture_output=True, text=True
    )
    assert r.returncode == 0, why + "\n" + r.stderr[-3000:]
    assert _steps(out) == _steps(ref), why  # same steps, same questions per step, nothing lost or repeated
    assert [s for s, _ in _steps(out)] == list(range(1, steps + 1))
    w_ref = torch.load(ref / "final" / "policy.pt")["logits"]
    w_out = torch.load(out / "final" / "policy.pt")["logits"]
    assert torch.allclose(w_ref, w_out, atol=1e-6)
    assert (out / "config.yaml").exists()
    csv_steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert csv_steps == [str(i) for i in range(1, steps + 1)]
    assert json.loads((out / "summary.json").read_text())["steps"] == steps
    # a rerun of a finished run does nothing
    r = subprocess.run(
        _train_cmd(out, train, steps), cwd=REPO, env=_env(0.0), timeout=120, capture_output=True, text=True
    )
    assert r.returncode == 0 and "nothing to do" in r.stdout


def test_async_checkpoint_requeues_in_flight_questions(tmp_path):
    """eta > 0: questions in flight at checkpoint time are replayed first on resume; none is trained twice."""

    import ray

    from asearcher.config import RLConfig
    from tests.rl.doubles import SimFactory, run_sim_controller

    os.environ["PYTHONPATH"] = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    # address="local": always a fresh local instance, never another process's cluster from /tmp/ray
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", ignore_reinit_error=True
    )
    factory = SimFactory({"kind": "fixed", "turns": 2}, token_delay_s=0.003)
    cfg = RLConfig(
        steps=2,
        batch_size=2,
        group_size=3,
        max_head_offpolicyness=2,
        max_concurrent_rollouts=8,
        rollout_workers=1,
        checkpoint_every=1,
        dynamic_filtering=False,
    )

    def run(steps: int, resume: bool):
        return run_sim_controller(cfg, factory, _rows(30), tmp_path, steps, resume=resume)

    try:
        first, _ = run(2, resume=False)
        second, state = run(4, resume=True)
    finally:
        ray.shutdown()
    requeued = state["stream"]["requeue"]
    assert state["step"] == 2 and requeued  # eta=2 keeps questions in flight across the checkpoint
    trained = [i for r in first.step_log + second.step_log for i in r["batch_indices"]]
    assert len(trained) == len(set(trained)) == 8
    # the replayed questions are admitted first after the resume, and none is lost
    assert second.admitted[: len(requeued)] == requeued
    after = {i for r in second.step_log for i in r["batch_indices"]}
    assert set(requeued) <= after | set(second.unfinished)
    assert second.counters["groups_admitted"] > first.counters["groups_admitted"]
