"""The eval runner with engine/tool/agent doubles: resume, atomic outputs, error rows, sealed rows, overlap."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from asearcher.agent.base import Agent
from asearcher.agent.trajectory import LLMCall, ToolCall, Trajectory
from asearcher.errors import UserFacingError
from asearcher.eval.aggregate import seeds_for
from asearcher.eval.judge import Judge
from asearcher.eval.metrics import METRICS
from asearcher.eval.outputs import trajectory_dict
from asearcher.eval.protocol import build_card
from asearcher.eval.runner import EvalJob, run_eval
from asearcher.llm.engine import GenerationRequest, GenerationResult, InferenceEngine, SamplingParams
from asearcher.tools.base import SearchHit, ToolBackend
from asearcher.utils.jsonl import read_jsonl


class Probe:
    """Counts LLM and tool calls in flight, and records whether they ever overlapped."""

    def __init__(self):
        self.llm = self.tool = self.traj = 0
        self.max_traj = self.max_llm = self.max_tool = 0
        self.overlap_llm_tool = 0  # moments a call started while a call of the other kind was running

    def enter(self, kind: str):
        setattr(self, kind, getattr(self, kind) + 1)
        name = f"max_{kind}"
        setattr(self, name, max(getattr(self, name), getattr(self, kind)))
        if (kind == "llm" and self.tool) or (kind == "tool" and self.llm):
            self.overlap_llm_tool += 1

    def leave(self, kind: str):
        setattr(self, kind, getattr(self, kind) - 1)


class SleepyEngine(InferenceEngine):
    tokenizer = None

    def __init__(self, probe: Probe, delay: float = 0.0):
        self.probe, self.delay = probe, delay

    @property
    def version(self) -> int:
        return 0

    async def agenerate(self, request: GenerationRequest) -> GenerationResult:
        self.probe.enter("llm")
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.probe.leave("llm")
        ids = [(x * 7 + (request.sampling.seed or 0)) % 97 for x in request.input_ids[:4]]
        return GenerationResult(ids, [-0.5] * len(ids), [0] * len(ids), "stop")


class SleepyTools(ToolBackend):
    def __init__(self, probe: Probe, delay: float = 0.0):
        self.probe, self.delay = probe, delay

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        self.probe.enter("tool")
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.probe.leave("tool")
        return [SearchHit(url=f"u{i}", contents=f'"T{i}"\n{query}') for i in range(topk)]

    async def access(self, url: str) -> str | None:
        return None


class ScriptedAgent(Agent):
    """One LLM call and one search (order alternates with the sample index, so both kinds overlap), then an
    answer that is a deterministic function of (question, seed): the gold answer when right(qid, seed).

    fail: {(qid, sample)} that raise as an engine failure would."""

    name = "scripted"
    prompt_hash = "sha256:test"

    def __init__(self, probe: Probe, fail: set[tuple[str, int]] = frozenset(), oracle: bool = False):
        self.probe, self.fail, self.oracle = probe, set(fail), oracle
        self.runs: list[tuple[str, int]] = []

    async def run(self, *, qid, question, answers, engine, tools, sampling, sample_idx=0, rng=None):
        self.runs.append((qid, sample_idx))
        self.probe.enter("traj")
        try:
            traj = Trajectory(
                qid=qid,
                question=question,
                answers=answers,
                agent=self.name,
                prompt_hash=self.prompt_hash,
                sample_idx=sample_idx,
                seed=sampling.seed,
            )
            steps = ["llm", "tool"] if sample_idx % 2 == 0 else ["tool", "llm"]
            for step in steps:
                t0 = time.time()
                if step == "llm":
                    res = await engine.agenerate(
                        GenerationRequest(input_ids=[len(question), 1, 2, 3], sampling=sampling)
                    )
                    traj.events.append(
                        LLMCall(
                            [len(question)],
                            res.output_ids,
                            res.output_logprobs,
                            res.output_versions,
                            "stop",
                            output_text=f"<think>{question}</think>",
                            t_start=t0,
                            t_end=time.time(),
                        )
                    )
                else:
                    hits = await tools.search(question, 2)
                    traj.events.append(
                        ToolCall(
                            "search",
                            question,
                            True,
                            [h.__dict__ for h in hits],
                            t_start=t0,
                            t_end=time.time(),
                        )
                    )
            if (qid, sample_idx) in self.fail:
                try:
                    raise ConnectionError(f"engine died while answering {question}")
                except ConnectionError:  # an agent that logs the failure with its traceback
                    logging.getLogger("asearcher.agent.scripted").exception("failed on %s", question)
                    raise
            traj.prediction = answers[0] if self.oracle or right(qid, sampling.seed) else "something else"
            traj.finish = "answer"
            return traj
        finally:
            self.probe.leave("traj")


def right(qid: str, seed: int) -> bool:
    return (int(qid) + seed) % 3 == 0 if qid.isdigit() else False


ROWS = [{"id": str(i), "question": f"Question number {i}?", "answers": [f"answer {i}"]} for i in range(6)]


def make_job(out: Path, rows=ROWS, k=2, concurrency=3, **kw) -> EvalJob:
    seeds = seeds_for(1, k)
    card = build_card(
        model_name="double",
        engine={"kind": "double"},
        agent={"kind": "scripted"},
        prompt_hash="sha256:test",
        retriever={"backend": "none", "topk": 2},
        search_backend="double",
        judge=None,
        temperature=0.6,
        top_p=0.95,
        max_new_tokens=8,
        k=k,
        seeds=seeds,
        benchmark="Toy",
        benchmark_file=None,
        n_questions=len(rows),
        sealed=False,
        version="test",
    )
    return EvalJob(
        benchmark="Toy",
        rows=rows,
        k=k,
        seeds=seeds,
        sampling=SamplingParams(max_new_tokens=8, temperature=0.6, top_p=0.95),
        metrics={m: METRICS[m] for m in ("f1", "em")},
        out_dir=out,
        card=card,
        concurrency=concurrency,
        progress=False,
        **kw,
    )


def go(job, agent=None, probe=None, delay=0.0):
    probe = probe or Probe()
    agent = agent or ScriptedAgent(probe)
    return asyncio.run(
        run_eval(job, agent=agent, engine=SleepyEngine(probe, delay), tools=SleepyTools(probe, delay))
    )


def strip_time(rows):
    """Rows without wall-clock fields (they differ between any two runs)."""
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k != "time_s"}
        r["stats"] = {k: v for k, v in r["stats"].items() if not k.endswith("_s")}
        out.append(r)
    return out


class Crash(RuntimeError):
    pass


def crash_after(n):
    count = {"n": 0}

    def hook(row):
        count["n"] += 1
        if count["n"] == n:
            raise Crash(f"injected crash after {n} samples")

    return hook


def test_uninterrupted_aggregate_and_card(tmp_path):
    agg = go(make_job(tmp_path / "a"))
    out = tmp_path / "a"
    assert {p.name for p in out.iterdir()} == {
        "samples.jsonl",
        "trajectories.jsonl",
        "protocol.json",
        "aggregate.json",
    }
    assert json.loads((out / "aggregate.json").read_text()) == agg
    seeds = seeds_for(1, 2)
    ok = [[right(str(q), seed) for seed in seeds] for q in range(6)]
    assert agg["metrics"]["em"]["avg@2"] == pytest.approx(sum(map(sum, ok)) / 12)
    assert agg["metrics"]["em"]["pass@2"] == pytest.approx(sum(map(any, ok)) / 6)
    assert 0 < agg["metrics"]["em"]["avg@2"] < agg["metrics"]["em"]["pass@2"] < 1  # a non-trivial case
    assert agg["metrics"]["em"]["by_sample"] == pytest.approx([sum(o[s] for o in ok) / 6 for s in range(2)])
    assert agg["n"] == 6 and agg["n_samples"] == 12 and agg["errors"] == 0 and agg["n_complete"] == 6
    assert agg["stats"]["avg_turns"] == 1.0 and agg["stats"]["avg_searches"] == 1.0
    card = agg["protocol"]
    for key in (
        "model",
        "agent",
        "prompt_hash",
        "retriever",
        "search_backend",
        "judge",
        "temperature",
        "top_p",
        "k",
        "seeds",
        "n_samples",
        "benchmark",
        "code_version",
    ):
        assert key in card
    assert card["seeds"] == seeds and card["n_samples"] == 12
    samples = read_jsonl(out / "samples.jsonl")
    assert [(r["id"], r["sample"]) for r in samples] == [(str(i), s) for i in range(6) for s in range(2)]
    r0 = samples[0]
    assert r0["seed"] == seeds[0] and r0["answers"] == ["answer 0"] and set(r0["scores"]) == {"f1", "em"}
    assert r0["stats"]["turns"] == 1 and r0["finish"] == "answer" and r0["status"] == "ok"
    trajs = read_jsonl(out / "trajectories.jsonl")
    assert [(t["id"], t["sample"]) for t in trajs] == [(r["id"], r["sample"]) for r in samples]  # same order
    assert len(trajs) == 12 and Trajectory.from_dict(trajs[0]["trajectory"]).question.startswith("Question")
    # the fast serialiser writes exactly what Trajectory.to_dict() gives
    t = Trajectory.from_dict(trajs[0]["trajectory"])
    assert (
        json.loads(json.dumps(trajectory_dict(t)))
        == json.loads(json.dumps(t.to_dict()))
        == trajs[0]["trajectory"]
    )
    assert not list(out.glob(".*")), "temp files left behind"


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    ref = go(make_job(tmp_path / "ref"))
    out = tmp_path / "run"
    with pytest.raises(Crash):
        go(make_job(out, on_sample=crash_after(5)))
    assert not (out / "aggregate.json").exists()
    done = {(r["id"], r["sample"]) for r in read_jsonl(out / "samples.jsonl")}
    assert 5 <= len(done) < 12
    # a torn half-line from a crash mid-write must not break the resume
    with open(out / "samples.jsonl", "a") as f:
        f.write('{"id": "5", "sam')
    probe = Probe()
    agent = ScriptedAgent(probe)
    agg = go(make_job(out), agent=agent, probe=probe)
    assert len(agent.runs) == 12 - len(done)
    assert not done & set(agent.runs), "finished pairs were redone"
    assert agg == ref
    assert strip_time(read_jsonl(out / "samples.jsonl")) == strip_time(
        read_jsonl(tmp_path / "ref/samples.jsonl")
    )
    trajs = read_jsonl(out / "trajectories.jsonl")
    assert [(t["id"], t["sample"]) for t in trajs] == [(str(i), s) for i in range(6) for s in range(2)]


def test_orphan_trajectory_rows_are_dropped_on_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        go(make_job(out, on_sample=crash_after(3)))
    # simulate a crash between the trajectory append and its sample-row commit
    with open(out / "trajectories.jsonl", "a") as f:
        f.write(json.dumps({"id": "0", "sample": 1, "seed": 0, "trajectory": None, "error": "orphan"}) + "\n")
        f.write(json.dumps({"id": "0", "sample": 0, "seed": 0, "trajectory": None, "error": "orphan"}) + "\n")
    go(make_job(out))
    trajs = read_jsonl(out / "trajectories.jsonl")
    assert len(trajs) == 12 and len({(t["id"], t["sample"]) for t in trajs}) == 12
    assert not any(t["error"] == "orphan" for t in trajs)


def test_error_rows_are_counted_not_dropped_and_retryable(tmp_path):
    out = tmp_path / "e"
    probe = Probe()
    seeds = seeds_for(1, 2)
    good_sample = next(s for s in range(2) if right("2", seeds[s]))  # an error on a sample that would score 1
    agent = ScriptedAgent(probe, fail={("2", good_sample)})
    agg = go(make_job(out), agent=agent, probe=probe)
    assert agg["errors"] == 1 and agg["n_samples"] == 12 and agg["finish"]["error"] == 1
    rows = {(r["id"], r["sample"]): r for r in read_jsonl(out / "samples.jsonl")}
    bad = rows[("2", good_sample)]
    assert bad["status"] == "error" and "ConnectionError" in bad["error"] and bad["prediction"] is None
    assert bad["scores"] == {"f1": 0.0, "em": 0.0}
    ok_mean = sum(r["scores"]["em"] for k, r in rows.items() if k != ("2", good_sample)) / 12
    assert agg["metrics"]["em"]["avg@2"] == pytest.approx(ok_mean)
    # a plain rerun keeps the error row; --retry-errors redoes exactly that pair
    probe2 = Probe()
    agent2 = ScriptedAgent(probe2)
    assert go(make_job(out), agent=agent2, probe=probe2)["errors"] == 1 and agent2.runs == []
    agent3 = ScriptedAgent(probe2)
    agg3 = go(make_job(out, retry_errors=True), agent=agent3, probe=probe2)
    assert agent3.runs == [("2", good_sample)] and agg3["errors"] == 0
    assert agg3 == go(make_job(tmp_path / "clean"))
    assert len(read_jsonl(out / "samples.jsonl")) == 12 and len(read_jsonl(out / "trajectories.jsonl")) == 12


def test_resume_with_different_protocol_is_refused(tmp_path):
    out = tmp_path / "p"
    with pytest.raises(Crash):
        go(make_job(out, on_sample=crash_after(2)))
    job = make_job(out)
    job.card["temperature"] = 1.0
    with pytest.raises(UserFacingError, match="temperature"):
        go(job)


def test_concurrency_overlaps_llm_and_tools(tmp_path):
    probe = Probe()
    rows = [{"id": str(i), "question": f"q{i}", "answers": ["a"]} for i in range(8)]
    go(make_job(tmp_path / "c", rows=rows, k=2, concurrency=4), probe=probe, delay=0.01)
    assert probe.max_traj == 4  # the limit is reached and never exceeded
    assert probe.max_llm >= 2 and probe.max_tool >= 2  # several calls of one kind at once
    assert probe.overlap_llm_tool > 0  # an LLM call ran while a search was waiting, and vice versa


def test_concurrency_one_is_serial(tmp_path):
    probe = Probe()
    go(make_job(tmp_path / "s", concurrency=1), probe=probe, delay=0.001)
    assert probe.max_traj == 1 and probe.overlap_llm_tool == 0


def test_judge_scores_are_aggregated(tmp_path):
    async def chat(messages, sampling):
        content = messages[0]["content"]
        verdict = "Correct" if "Predicted answer:\nanswer" in content else "Incorrect"
        return f'```json\n{{"rationale": "r", "judgement": "{verdict}"}}\n```'

    job = make_job(tmp_path / "j", judge=Judge(chat, max_retries=0))
    agg = go(job)
    assert agg["metrics"]["judge"]["avg@2"] == agg["metrics"]["em"]["avg@2"]
    assert agg["judge_status"] == {"ok": 12}
    row = read_jsonl(tmp_path / "j/samples.jsonl")[0]
    assert row["judge"]["status"] == "ok" and row["scores"]["judge"] in (0.0, 1.0)


def test_duplicate_ids_and_seed_count_are_errors(tmp_path):
    with pytest.raises(UserFacingError, match="duplicate"):
        make_job(tmp_path, rows=ROWS + ROWS[:1])
    with pytest.raises(ValueError, match="seed"):
        EvalJob(
            benchmark="x",
            rows=ROWS,
            k=3,
            seeds=[1],
            sampling=SamplingParams(),
            metrics={},
            out_dir=tmp_path,
            card={},
        )


def test_sealed_rows_never_reach_disk(tmp_path, mirror_dir, caplog):
    """Real xBench rows (decrypted in memory only): no question/answer plaintext in any output file."""
    from asearcher.eval.loaders import is_sealed, load_benchmark, reveal

    rows = load_benchmark("xBench-DeepSearch", mirror_dir / "ASearcher-test-data", limit=3)
    assert all(is_sealed(r) for r in rows)
    out = tmp_path / "x"
    job = make_job(out, rows=rows, k=2)
    assert job.sealed

    async def chat(messages, sampling):  # a judge that quotes the gold answer back in its rationale
        gold = messages[0]["content"].split("same answer):\n", 1)[1].split("\n", 1)[0]
        return f'```json\n{{"rationale": "gold is {gold}", "judgement": "Correct"}}\n```'

    job.judge = Judge(chat, max_retries=0)
    probe = Probe()
    # the agent answers with the gold answer and writes the question into its model text and search queries
    agent = ScriptedAgent(probe, fail={(rows[0]["id"], 1)}, oracle=True)
    agg = go(job, agent=agent, probe=probe)
    assert agg["metrics"]["judge"]["avg@2"] == pytest.approx(5 / 6) and agg["errors"] == 1
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    logged = caplog.text.encode("utf-8")
    assert b"<sealed>" in logged and b"ConnectionError" in logged  # the failure was logged, redacted
    secrets = [reveal(r["question"]) for r in rows] + [reveal(a) for r in rows for a in r["answers"]]
    secrets = [t for t in secrets if len(t) >= 4]  # a 1-digit answer would match any number in the files
    assert len(secrets) >= 3
    for text in secrets:
        for piece in {text, text[: max(4, len(text) // 3)]}:
            assert piece.encode("utf-8") not in blob, "sealed plaintext written to disk"
            assert piece.encode("utf-8") not in logged, "sealed plaintext logged"
    samples = read_jsonl(out / "samples.jsonl")
    assert samples[0]["question_sha256"] == rows[0]["question"].sha256
    assert samples[0]["answers_sha256"] == [a.sha256 for a in rows[0]["answers"]]
    assert "prediction" not in samples[0] and "raw" not in samples[0]["judge"]
    traj = read_jsonl(out / "trajectories.jsonl")[0]["trajectory"]
    assert "question" not in traj and all(
        "input_ids" not in e and "argument" not in e for e in traj["events"]
    )
    assert traj["events"][0]["n_output_tokens"] == 4


def test_error_rows_score_zero_even_where_em_credits_an_empty_answer(tmp_path):
    """em/cem score a missing answer as "" (upstream), which equals a gold that normalises to nothing; an error
    row still scores 0 on every metric, while a finished sample with that gold gets upstream's credit."""
    rows = [
        {"id": "0", "question": "q0", "answers": ["the"]},
        {"id": "1", "question": "q1", "answers": ["the"]},
    ]
    job = make_job(tmp_path / "e", rows=rows, k=1)
    job.metrics = {m: METRICS[m] for m in ("em", "cem", "em_strict")}
    probe = Probe()
    agg = go(job, agent=ScriptedAgent(probe, fail={("0", 0)}, oracle=True), probe=probe)
    by_id = {r["id"]: r for r in read_jsonl(tmp_path / "e/samples.jsonl")}
    assert by_id["0"]["status"] == "error"
    assert by_id["0"]["scores"] == {"em": 0.0, "cem": 0.0, "em_strict": 0.0}
    # sample 1 answers "the": "" == "" for upstream's em/cem; the strict variant gives no credit
    assert by_id["1"]["status"] == "ok"
    assert by_id["1"]["scores"] == {"em": 1.0, "cem": 1.0, "em_strict": 0.0}
    assert agg["errors"] == 1
