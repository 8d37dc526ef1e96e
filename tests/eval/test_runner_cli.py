"""`asearcher eval` argument handling and user-facing errors (no model, no server needed)."""

from __future__ import annotations

import pytest

from asearcher.cli import main


@pytest.fixture
def no_retrieval(monkeypatch):
    monkeypatch.delenv("ASEARCHER_RETRIEVAL_URL", raising=False)
    monkeypatch.delenv("RAG_SERVER_ADDR_DIR", raising=False)


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "with-retrieval" in out and "--max-samples" in out and "Resumable" in out


def test_missing_retrieval_server_is_a_clear_error(tmp_path, mirror_dir, no_retrieval, capsys):
    rc = main(
        [
            "eval",
            "--model",
            "tiny",
            "--benchmark",
            "Bamboogle",
            "--releases",
            str(mirror_dir),
            "--output",
            str(tmp_path / "o"),
            "--set",
            f"results_dir={tmp_path}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "ASEARCHER_RETRIEVAL_URL" in err and "asearcher with-retrieval" in err
    assert not (tmp_path / "o").exists()


def test_unknown_benchmark_and_model(tmp_path, mirror_dir, no_retrieval, capsys):
    rc = main(["eval", "--model", "tiny", "--benchmark", "Bambogle", "--releases", str(mirror_dir)])
    assert rc == 2 and "Did you mean Bamboogle" in capsys.readouterr().err
    rc = main(
        [
            "eval",
            "--model",
            "nope",
            "--benchmark",
            "Bamboogle",
            "--releases",
            str(mirror_dir),
            "--set",
            "models={a: {kind: openai, model: m}}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "'nope'" in err and "models" in err


def test_missing_test_data_names_where_it_looked(tmp_path, no_retrieval, capsys, monkeypatch):
    monkeypatch.delenv("ASEARCHER_MIRROR", raising=False)
    rc = main(
        ["eval", "--model", "tiny", "--benchmark", "Bamboogle", "--releases", str(tmp_path / "nowhere")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "nowhere" in err and "--releases" in err


def test_judge_metric_without_judge_is_refused(tmp_path, mirror_dir, no_retrieval, capsys):
    rc = main(
        [
            "eval",
            "--model",
            "tiny",
            "--benchmark",
            "Bamboogle",
            "--releases",
            str(mirror_dir),
            "--set",
            "eval.metrics=[f1, judge]",
        ]
    )
    assert rc == 2 and "eval.judge.enabled" in capsys.readouterr().err
