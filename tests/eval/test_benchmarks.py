"""Benchmark registry and loaders: real mirror data, plus made-up files for GAIA and error cases."""

from __future__ import annotations

import base64
import csv
import json
import logging
import re
from pathlib import Path

import pytest

from asearcher.errors import UserFacingError
from asearcher.eval.loaders import Sealed, is_sealed, load_benchmark, public_view, reveal
from asearcher.eval.registry import get_benchmark, list_benchmarks
from asearcher.utils.jsonl import DataError

PAPER_SIZES = {
    "NQ": 1000,
    "TriviaQA": 1000,
    "PopQA": 1000,
    "HotpotQA": 1000,
    "2Wiki": 1000,
    "MuSiQue": 1000,
    "Bamboogle": 125,
    "Frames": 824,
    "GAIA": 103,
    "xBench-DeepSearch": 100,
}


@pytest.fixture(scope="module")
def test_data(mirror_dir: Path) -> Path:
    return mirror_dir / "ASearcher-test-data"


# ---- registry --------------------------------------------------------------------------------------------
def test_registry_has_the_ten_benchmarks():
    specs = {s.name: s for s in list_benchmarks()}
    assert {n: s.paper_size for n, s in specs.items()} == PAPER_SIZES
    for name in ("GAIA", "xBench-DeepSearch", "Frames"):
        assert specs[name].metrics == ["judge"] and specs[name].settings == ["web"]
    assert specs["HotpotQA"].metrics == ["f1", "judge"]
    assert specs["xBench-DeepSearch"].sealed and specs["xBench-DeepSearch"].language == "zh"
    assert specs["Frames"].folder == "frames"  # lower-case upstream folder


def test_lookup_by_alias_folder_and_case():
    assert get_benchmark("HotpotQA_rand1000").name == "HotpotQA"
    assert get_benchmark("hotpotqa").name == "HotpotQA"
    assert get_benchmark("FRAMES").name == "Frames"
    assert get_benchmark("2WikiMultihopQA_rand1000").name == "2Wiki"


def test_unknown_name_suggests():
    with pytest.raises(UserFacingError, match=r"unknown benchmark 'hotpot_qa'\. Did you mean HotpotQA\?"):
        get_benchmark("hotpot_qa")
    with pytest.raises(UserFacingError, match="Known: 2Wiki"):
        get_benchmark("zzzzzz")


def test_bad_spec_names_file_and_key(tmp_path):
    (tmp_path / "X.yaml").write_text(
        "name: X\nfolder: x\nfiles: [{name: a, format: tsv}]\nquestion_fields: [q]\n"
        "answer_fields: [a]\npaper_size: 1\nmetrics: [bleu]\nsettings: [web]\nfoo: 1\n"
    )
    with pytest.raises(UserFacingError) as e:
        get_benchmark("X", directory=tmp_path)
    msg = str(e.value)
    assert "X.yaml" in msg and "files.0.format" in msg and "foo: unknown key" in msg and "bleu" in msg


# ---- real data -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,n",
    [
        ("NQ", 1000),
        ("TriviaQA", 1000),
        ("PopQA", 1000),
        ("HotpotQA", 500),
        ("2Wiki", 512),
        ("MuSiQue", 512),
        ("Bamboogle", 125),
    ],
)
def test_qa_sets_from_mirror(test_data, name, n):
    rows = load_benchmark(name, test_data)
    assert len(rows) == n
    assert len({r["id"] for r in rows}) == n
    for r in rows:
        assert set(r) == {"id", "question", "answers"}
        assert isinstance(r["question"], str) and r["question"].strip()
        assert r["answers"] and all(isinstance(a, str) and a for a in r["answers"])


def test_bamboogle_first_row_and_limit(test_data):
    rows = load_benchmark("Bamboogle", test_data, limit=3)
    assert len(rows) == 3
    assert rows[0] == {
        "id": "bamboogle_0",
        "question": "Who was president of the United States in the year that Citibank was founded?",
        "answers": ["james madison"],
    }


def test_frames_csv(test_data):
    rows = load_benchmark("Frames", test_data)
    assert len(rows) == 824
    assert [r["id"] for r in rows[:3]] == ["0", "1", "2"]  # id = row index
    assert rows[0]["answers"] == ["Jane Ballou"]
    assert rows[0]["question"].startswith("If my future wife has the same first name")


def _xbench_encrypt(text: str, canary: str) -> str:
    key = canary.encode()
    return base64.b64encode(bytes(b ^ key[i % len(key)] for i, b in enumerate(text.encode()))).decode()


def test_xbench_is_decrypted_but_sealed(test_data, caplog):
    rows = load_benchmark("xBench-DeepSearch", test_data)
    assert len(rows) == 100 and all(is_sealed(r) for r in rows)
    q = reveal(rows[0]["question"])
    a = reveal(rows[0]["answers"][0])
    assert re.search(r"[\u4e00-\u9fff]", q)  # Chinese plaintext after decryption
    # the decryption is exact: re-encrypting gives the published ciphertext
    with open(test_data / "xbench-deepsearch" / "DeepSearch-2505.csv", encoding="utf-8-sig", newline="") as f:
        first = next(csv.DictReader(f))
    assert _xbench_encrypt(q, first["canary"]) == first["prompt"]
    assert _xbench_encrypt(a, first["canary"]) == first["answer"]
    # plaintext never shows through repr/str/format/logging, and json refuses it
    row = rows[0]
    shown = [repr(row), str(row), f"{row['question']}", "%s" % (row["answers"][0],)]  # noqa: UP031 - %-format is what logging uses
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("row %s q %s", row, row["question"])
    shown.append(caplog.text)
    for text in shown:
        assert q not in text and a not in text and "sealed sha256:" in text
    with pytest.raises(TypeError):
        json.dumps(row)
    pub = json.dumps(public_view(row), ensure_ascii=False)
    assert q not in pub and a not in pub and rows[0]["question"].sha256 in pub


def test_xbench_made_up_file_and_bad_canary(tmp_path):
    canary = "TEST CANARY guid 123"
    d = tmp_path / "xbench-deepsearch"
    d.mkdir()
    with open(d / "DeepSearch-2505.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "answer", "reference_steps", "canary"])
        w.writerow(["7", _xbench_encrypt("问题一？", canary), _xbench_encrypt("答案", canary), "", canary])
        w.writerow(["8", "@@not base64@@", _xbench_encrypt("x", canary), "", canary])
    with pytest.raises(DataError, match=r"DeepSearch-2505.csv:3: field 'prompt' does not decrypt"):
        load_benchmark("xbench", tmp_path)
    rows = load_benchmark("xbench", tmp_path, limit=1)
    assert rows[0]["id"] == "7" and rows[0]["question"].reveal() == "问题一？"
    assert rows[0]["answers"] == [Sealed("答案")]


# ---- made-up files: GAIA, JSON list vs JSONL, errors --------------------------------------------------------
GAIA_ROWS = [
    {"task_id": "t-001", "Question": "What is two plus two?", "Final answer": "4", "Level": 1},
    {"task_id": "t-002", "question": "Name the made-up capital of Testland.", "answer": "Testville"},
    {"task_id": "t-003", "Question": "How many legs has a made-up tripod?", "Final_answer": 3},
]


def test_gaia_json_list_and_jsonl(tmp_path):
    d = tmp_path / "GAIA"
    d.mkdir()
    (d / "test.json").write_text(json.dumps(GAIA_ROWS, indent=2))
    rows = load_benchmark("GAIA", tmp_path)
    assert rows == [
        {"id": "t-001", "question": "What is two plus two?", "answers": ["4"]},
        {"id": "t-002", "question": "Name the made-up capital of Testland.", "answers": ["Testville"]},
        {"id": "t-003", "question": "How many legs has a made-up tripod?", "answers": ["3"]},
    ]
    (d / "test.json").unlink()
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GAIA_ROWS))
    assert load_benchmark("gaia", tmp_path) == rows


def _write(tmp_path: Path, folder: str, name: str, text: str) -> Path:
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d / name


def test_qa_json_list_upstream_style(tmp_path):
    # upstream test.json: a JSON list, answer str or list, `gt` spelling, no ids -> row index
    _write(
        tmp_path,
        "Bamboogle",
        "test.json",
        json.dumps([{"question": "q0?", "answer": "a0"}, {"question": "q1?", "gt": ["a1", "b1"]}]),
    )
    assert load_benchmark("Bamboogle", tmp_path) == [
        {"id": "0", "question": "q0?", "answers": ["a0"]},
        {"id": "1", "question": "q1?", "answers": ["a1", "b1"]},
    ]


@pytest.mark.parametrize(
    "text,pattern",
    [
        (
            '{"id": "a", "question": "q", "answer": ["x"]}\n{"id": "b", "question": "q2"}\n',
            r"test.jsonl:2: missing answer field \(one of answer, gt, golden_answers\)",
        ),
        ('{"id": "a", "question": "q", "answer": []}\n', r"test.jsonl:1: field 'answer': empty answer list"),
        (
            '{"id": "a", "question": "", "answer": ["x"]}\n',
            r"test.jsonl:1: field 'question' must be a non-empty",
        ),
        (
            '{"id": "a", "question": "q", "answer": ["x"]}\n{"id": "a", "question": "q", "answer": ["y"]}\n',
            r"test.jsonl:2: duplicate id 'a' \(first at .*test.jsonl:1\)",
        ),
        (
            '{"id": "a", "question": "q", "answer": ["x"]}\n{"id": "b", "question"\n',
            r"test.jsonl:2: malformed JSON",
        ),
        (
            '{"id": "a", "question": "q", "answer": [null]}\n',
            r"test.jsonl:1: field 'answer'\[0\]: answers must be",
        ),
    ],
)
def test_bad_rows_name_file_line_field(tmp_path, text, pattern):
    _write(tmp_path, "Bamboogle", "test.jsonl", text)
    with pytest.raises(DataError, match=pattern):
        load_benchmark("Bamboogle", tmp_path)


def test_bad_json_list_names_line(tmp_path):
    _write(tmp_path, "Bamboogle", "test.json", '[\n {"question": "q", "answer": "a"},\n {"question": }\n]')
    with pytest.raises(DataError, match=r"test.json:3: malformed JSON"):
        load_benchmark("Bamboogle", tmp_path)


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(UserFacingError, match="fetch-data --release test-data"):
        load_benchmark("NQ", tmp_path)


def test_frames_missing_column(tmp_path):
    _write(tmp_path, "frames", "frames_test_set.csv", "question,answer_x\nq,a\n")
    with pytest.raises(DataError, match=r"frames_test_set.csv:1: missing column\(s\) true_answer"):
        load_benchmark("Frames", tmp_path)
