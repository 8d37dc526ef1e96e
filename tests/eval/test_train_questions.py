"""The in-distribution benchmark train-questions: the RL training questions of a run, read from a file the run
produces, evaluated like a test benchmark and flagged in-distribution; and its place in the DAG (eval.in_distribution).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asearcher.cli import main
from asearcher.config import load_config
from asearcher.errors import UserFacingError
from asearcher.eval.loaders import load_questions_file
from asearcher.eval.registry import get_benchmark, list_benchmarks, list_run_benchmarks
from asearcher.utils.jsonl import DataError

REPO = Path(__file__).resolve().parents[2]
# rows as the SFT output's answerable.jsonl (and ASearcher-Base-35k) write them, and as ASearcher-LRM-35k does
BASE_ROWS = [
    {"qid": f"q{i}", "question": f"Question {i}?", "answer": [f"answer {i}"], "aug_answer": [], "source": "s"}
    for i in range(5)
]
LRM_ROWS = [{"idx": 7, "id": "x", "question": "Who wrote Hamlet?", "answer": "William Shakespeare"}]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_registered_as_a_run_benchmark_flagged_in_distribution():
    spec = get_benchmark("train-questions")
    assert spec.name.startswith("train-") and spec.source == "run" and spec.in_distribution
    assert spec.folder is None and spec.paper_size is None
    assert get_benchmark("TRAIN_QUESTIONS") is spec  # alias, case-insensitive
    assert spec.name not in {s.name for s in list_benchmarks()}  # not one of the paper's benchmarks
    assert [s.name for s in list_run_benchmarks()] == ["train-questions"]
    assert not any(s.in_distribution for s in list_benchmarks())
    with pytest.raises(UserFacingError, match="--questions"):
        spec.resolve_file("/nonexistent")


def test_a_test_data_benchmark_still_needs_its_folder(tmp_path):
    (tmp_path / "X.yaml").write_text(
        "name: X\nfiles: [{name: a.jsonl, format: jsonl}]\nquestion_fields: [q]\nanswer_fields: [a]\n"
        "metrics: [f1]\nsettings: [web]\n"
    )
    with pytest.raises(UserFacingError, match="needs folder and paper_size"):
        get_benchmark("X", directory=tmp_path)


def test_rows_from_both_training_file_formats(tmp_path):
    rows = load_questions_file("train-questions", _write(tmp_path / "a.jsonl", BASE_ROWS), limit=3)
    assert rows == [
        {"id": f"q{i}", "question": f"Question {i}?", "answers": [f"answer {i}"]} for i in range(3)
    ]
    (row,) = load_questions_file("train-questions", _write(tmp_path / "b.jsonl", LRM_ROWS))
    assert row == {
        "id": "7",
        "question": "Who wrote Hamlet?",
        "answers": ["William Shakespeare"],
    }  # idx first
    with pytest.raises(DataError, match="does not exist"):
        load_questions_file("train-questions", tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match=r"b2\.jsonl:1: missing answer field"):
        load_questions_file(
            "train-questions", _write(tmp_path / "b2.jsonl", [{"qid": "1", "question": "Q?"}])
        )


@pytest.fixture
def no_retrieval(monkeypatch):
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL", raising=False)
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)


def test_questions_flag_is_required_and_only_for_run_benchmarks(tmp_path, mirror_dir, no_retrieval, capsys):
    rc = main(["eval", "--model", "m", "--benchmark", "train-questions", "--releases", str(mirror_dir)])
    assert rc == 2 and "pass it with --questions FILE" in capsys.readouterr().err
    questions = _write(tmp_path / "q.jsonl", BASE_ROWS)
    rc = main(["eval", "--model", "m", "--benchmark", "Bamboogle", "--questions", str(questions),
               "--releases", str(mirror_dir)])  # fmt: skip
    assert (
        rc == 2 and "--questions is for benchmarks whose questions a run produces" in capsys.readouterr().err
    )


def test_evaluated_with_the_tiny_model_and_carded_in_distribution(tmp_path, tiny_model_dir, no_retrieval):
    """End to end with the real tiny model (the direct agent, so no retrieval server is needed): the first N rows
    of the file, k samples each, and a protocol card that says in-distribution and names the file's hash."""
    from asearcher.eval.protocol import file_sha256

    questions = _write(tmp_path / "answerable.jsonl", BASE_ROWS)
    out = tmp_path / "out"
    sets = ["agent.kind=direct", "agent.max_new_tokens=8", "agent.max_context_tokens=512", "eval.k=2",
            f"models={{tiny-rl: {{kind: transformers, model: {tiny_model_dir}}}}}", f"results_dir={tmp_path}"]  # fmt: skip
    rc = main(["eval", "--no-progress", "--model", "tiny-rl", "--benchmark", "train-questions", "--questions",
               str(questions), "--max-samples", "3", "--output", str(out), *[a for s in sets for a in ("--set", s)]])  # fmt: skip
    assert rc == 0
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["benchmark"] == "train-questions" and agg["n"] == 3 and agg["k"] == 2
    bench = agg["protocol"]["benchmark"]
    assert bench == {"name": "train-questions", "file": "answerable.jsonl", "sha256": file_sha256(questions),
                     "in_distribution": True}  # fmt: skip
    ids = {json.loads(x)["id"] for x in (out / "samples.jsonl").read_text().splitlines()}
    assert ids == {"q0", "q1", "q2"}


def test_paper_benchmarks_carry_no_in_distribution_key():
    from asearcher.eval.protocol import build_card

    card = dict(model_name="m", engine={}, agent={}, prompt_hash="h", retriever={}, search_backend="s", judge=None,
                temperature=0.6, top_p=0.95, max_new_tokens=8, k=1, seeds=[1], n_questions=1, sealed=False,
                benchmark_file=None, version="v")  # fmt: skip
    assert "in_distribution" not in build_card(benchmark="Bamboogle", **card)["benchmark"]
    assert build_card(benchmark="train-questions", in_distribution=True, **card)["benchmark"][
        "in_distribution"
    ]


# ---- the DAG ---------------------------------------------------------------------------------------------------------
def _dry_run(tmp_path: Path, **sections: dict) -> str:
    """`snakemake -n -p` on configs/default.yaml with `sections` merged over it and results under tmp_path."""

    def merge(base: dict, over: dict) -> dict:
        for k, v in over.items():
            base[k] = merge(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
        return base

    cfg = merge(yaml.safe_load((REPO / "configs/default.yaml").read_text()), sections)
    cfg["results_dir"] = str(tmp_path)
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _train_question_commands(out: str) -> list[str]:
    return [line for line in out.splitlines() if "--benchmark train-questions" in line]


def test_cpu_default_evaluates_both_models_on_the_rl_questions(tmp_path):
    assert load_config(REPO / "configs/default.yaml").eval.in_distribution
    out = _dry_run(tmp_path)
    cmds = _train_question_commands(out)
    assert sorted(c.split("--model ")[1].split()[0] for c in cmds) == ["tiny-rl", "tiny-sft"]
    # what RL trains on in the CPU default (the SFT output's answerable questions, the first 8), with the agent as
    # trained (the tiny model knows only the training prompt)
    for c in cmds:
        assert f"--questions {tmp_path}/cpu-default/sft/model/answerable.jsonl --max-samples 8" in c
        assert "--set eval.agent.defaults=agent" in c
        assert " with-retrieval " in c and "/asearcher-bm25-top3/train-questions" in c
    for model in ("tiny-sft", "tiny-rl"):
        assert f"{tmp_path}/eval/{model}/asearcher-bm25-top3/train-questions/aggregate.json" in out


def test_switched_off_and_without_rl_there_is_none(tmp_path):
    assert not _train_question_commands(_dry_run(tmp_path, eval={"in_distribution": False}))
    assert not _train_question_commands(_dry_run(tmp_path, rl={"enabled": False}))


def test_without_the_sft_warm_start_it_reads_the_released_training_file(tmp_path):
    out = _dry_run(tmp_path, rl={"sft": {"enabled": False}}, eval={"in_distribution_questions": 3})
    cmds = _train_question_commands(out)
    assert cmds and all(
        f"--questions {tmp_path}/releases/ASearcher-train-data/ASearcher-Base-35k.jsonl --max-samples 3" in c
        for c in cmds
    )
