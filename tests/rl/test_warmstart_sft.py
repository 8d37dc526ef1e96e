"""Oracle trajectories through the real base agent, and the `asearcher sft` stage end to end over real HTTP.

The retrieval server is the real FastAPI app served by uvicorn on 127.0.0.1; only its searcher is a test double
(word overlap over the first real corpus passages) so the test needs neither Java nor a Lucene index.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import pytest

from asearcher.config import AgentConfig, RLConfig
from asearcher.retrieval.searcher import Searcher
from asearcher.rl.algo.rewards import score_trajectory
from asearcher.tools.base import SearchHit, ToolBackend
from asearcher.utils.jsonl import read_jsonl, write_jsonl

N_PASSAGES = 40
AGENT = AgentConfig(
    max_turns=4, max_new_tokens=48, max_context_tokens=1024, topk=3, doc_max_chars=300, allow_access=False
)


def _words(s: str) -> set[str]:
    return set(re.findall(r"\w+", s.lower()))


class OverlapSearcher(Searcher):
    """Test double of the Lucene searcher: rank passages by shared words with the query."""

    backend = "test-overlap"

    def __init__(self, rows):
        self.rows = rows
        self.num_docs = len(rows)
        self._w = [_words(r["contents"]) for r in rows]

    def batch_search_scored(self, queries, k):
        out = []
        for q in queries:
            qw = _words(q)
            scored = sorted(((len(qw & w), -i) for i, w in enumerate(self._w)), reverse=True)[:k]
            out.append([(self.rows[-i], float(s)) for s, i in scored])
        return out


class RowTools(ToolBackend):
    def __init__(self, searcher):
        self.s = searcher

    async def search(self, query, topk):
        return [
            SearchHit(url=r["url"], contents=r["contents"], id=r["id"]) for r in self.s.search(query, topk)
        ]

    async def access(self, url):
        return None


@pytest.fixture(scope="module")
def rows(corpus_file):
    return read_jsonl(corpus_file, limit=N_PASSAGES)


def _title(row) -> str:
    return row["contents"].split("\n", 1)[0].strip('"')


@pytest.fixture(scope="module")
def train_file(rows, tmp_path_factory):
    """Questions answerable from the passages (gold = the passage title) plus one that is not."""
    out = []
    for i, r in enumerate(rows[:12]):
        out.append(
            {
                "qid": f"t{i}",
                "question": f"Which article is about {_title(r)}?",
                "answer": [_title(r)],
                "aug_answer": [],
                "source": "test",
            }
        )
    out.append(
        {
            "qid": "miss",
            "question": "Which article is about zzqx?",
            "answer": ["zzqxzzqx"],
            "aug_answer": [],
            "source": "test",
        }
    )
    p = tmp_path_factory.mktemp("sft") / "train.jsonl"
    write_jsonl(p, out)
    return p


def test_oracle_records_match_the_agent_and_score_full_reward(tiny_model_dir, rows, train_file):
    from transformers import AutoTokenizer

    from asearcher.agent.registry import make_agent
    from asearcher.data.trainset import load_trainset
    from asearcher.rl.warmstart.oracle import oracle_trajectories
    from asearcher.rl.algo.packing import pack_trajectory

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    agent = make_agent(AGENT, tok, kind="asearcher")
    recs = load_trainset(train_file)
    trajs, skipped = asyncio.run(
        oracle_trajectories(
            recs,
            agent,
            RowTools(OverlapSearcher(rows)),
            tok,
            topk=3,
            doc_max_chars=300,
            max_new_tokens=AGENT.max_new_tokens,
        )
    )
    assert skipped.get("miss") == "gold not in the top-3 results" and len(trajs) >= 8
    cfg = RLConfig()
    for t in trajs:
        calls = t.llm_calls
        assert [c.purpose for c in calls] == ["act", "read", "act"] and t.finish == "answer"
        assert [e.tool for e in t.tool_calls] == ["search"]
        # token-in/token-out: the read turn and the answer turn extend the recorded prefix exactly
        assert calls[1].input_ids[: len(calls[0].input_ids) + len(calls[0].output_ids)] == (
            calls[0].input_ids + calls[0].output_ids
        )
        seqs = pack_trajectory(t, 1.0)
        assert len(seqs) == 1 and sum(seqs[0].loss_mask) == sum(len(c.output_ids) for c in calls)
        gold_in_results = any(t.prediction.lower() in h["contents"].lower() for h in t.tool_calls[0].result)
        assert gold_in_results
        r, info = score_trajectory(t, t.answers, None, cfg)
        assert r == 1.0 and info["format"] == 1.0, (t.prediction, [c.output_text for c in calls])


class _Server:
    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop="asyncio"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("test retrieval server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def test_sft_stage_end_to_end(tiny_model_dir, rows, train_file, tmp_path, monkeypatch):
    import yaml
    from transformers import AutoModelForCausalLM

    from asearcher.cli import main
    from asearcher.config import RetrievalConfig
    from asearcher.retrieval.server import create_app

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {"agent": AGENT.model_dump(), "rl": {"sft": {"epochs": 4, "lr": 3e-3, "batch_size": 4}}}
        )
    )
    out = tmp_path / "sft" / "model"
    app = create_app(OverlapSearcher(rows), None, RetrievalConfig())
    with _Server(app) as srv:
        monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", f"http://127.0.0.1:{srv.port}")
        rc = main(
            [
                "sft",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(train_file),
                "--output",
                str(out),
                "--config",
                str(cfg_file),
            ]
        )
        assert rc == 0
        metrics = json.loads((out / "sft_metrics.json").read_text())
        assert metrics["skipped"] >= 1 and metrics["trajectories"] >= 8
        losses = [e["loss"] for e in metrics["epochs"]]
        assert losses[-1] < 0.7 * losses[0], losses
        AutoModelForCausalLM.from_pretrained(out)  # a loadable HF dir, tokenizer included
        assert (out / "tokenizer.json").exists() or (out / "tokenizer_config.json").exists()
        # resumable: the oracle records are reused, not recomputed
        (work,) = (out.parent / "model.work").glob("oracle-*.jsonl")
        n = len(read_jsonl(work))
        assert (
            main(
                [
                    "sft",
                    "--model",
                    str(tiny_model_dir),
                    "--train",
                    str(train_file),
                    "--output",
                    str(out),
                    "--config",
                    str(cfg_file),
                    "--epochs",
                    "1",
                ]
            )
            == 0
        )
        assert len(read_jsonl(work)) == n


def test_pick_distractor_takes_the_first_title_sharing_no_word_with_a_gold():
    from asearcher.rl.warmstart.oracle import pick_distractor

    hits = [
        SearchHit("u1", '"Paris Opera"\nThe Paris opera house...'),
        SearchHit("u2", "no title line\ntext"),
        SearchHit("u3", '"Lyon"\nLyon is a city.'),
        SearchHit("u4", '"Marseille"\nA port.'),
    ]
    assert (
        pick_distractor(hits, ["Paris"]) == "Lyon"
    )  # 'Paris Opera' shares a word; the untitled hit is skipped
    assert pick_distractor(hits, ["the city of Lyon", "Paris"]) == "Marseille"
    assert pick_distractor(hits[:3], ["Lyon", "Paris"]) is None
    assert pick_distractor([SearchHit("u", '"<b>"\nx')], ["Paris"]) is None  # would break the tag format


def test_distractor_twins_answer_a_wrong_string_from_the_same_results(tiny_model_dir, rows, train_file):
    from transformers import AutoTokenizer

    from asearcher.agent.registry import make_agent
    from asearcher.data.trainset import load_trainset
    from asearcher.rl.warmstart.oracle import TWIN_SUFFIX, oracle_trajectories, wants_twin

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    agent = make_agent(AGENT, tok, kind="asearcher")
    recs = load_trainset(train_file)
    tools = RowTools(OverlapSearcher(rows))

    def run(rate):
        return asyncio.run(
            oracle_trajectories(
                recs,
                agent,
                tools,
                tok,
                topk=3,
                doc_max_chars=300,
                max_new_tokens=AGENT.max_new_tokens,
                distractor_rate=rate,
                seed=7,
            )
        )

    plain, _ = run(0.0)
    assert not any(t.qid.endswith(TWIN_SUFFIX) for t in plain)
    trajs, _ = run(1.0)
    by_qid = {t.qid: t for t in trajs}
    twins = [t for t in trajs if t.qid.endswith(TWIN_SUFFIX)]
    assert twins and len(trajs) == len(plain) + len(twins)
    cfg = RLConfig()
    for w in twins:
        gold = by_qid[w.qid[: -len(TWIN_SUFFIX)]]
        # same prompt and the same search as its gold trajectory; then it cites and answers another string ...
        assert w.llm_calls[0].input_ids == gold.llm_calls[0].input_ids
        assert w.llm_calls[0].output_ids == gold.llm_calls[0].output_ids
        assert w.tool_calls[0].result == gold.tool_calls[0].result
        assert w.prediction != gold.prediction and w.prediction in w.llm_calls[1].output_text
        assert any(w.prediction in h["contents"] for h in w.tool_calls[0].result)
        # ... which is well formed and wrong: the reward separates the two
        r, info = score_trajectory(w, w.answers, None, cfg)
        assert info["format"] == 1.0 and r == 0.0
        assert score_trajectory(gold, gold.answers, None, cfg)[0] == 1.0
    # the per-question draw is deterministic and follows the rate
    draws = [wants_twin(f"q{i}", 0.3, seed=1) for i in range(2000)]
    assert (
        draws == [wants_twin(f"q{i}", 0.3, seed=1) for i in range(2000)] and 0.25 < sum(draws) / 2000 < 0.35
    )


def test_sft_without_grounded_questions_is_a_clear_error(tiny_model_dir, rows, tmp_path, monkeypatch, capsys):
    from asearcher.cli import main
    from asearcher.config import RetrievalConfig
    from asearcher.retrieval.server import create_app

    train = tmp_path / "t.jsonl"
    write_jsonl(train, [{"qid": "a", "question": "zzqx?", "answer": ["zzqxzzqx"]}])
    with _Server(create_app(OverlapSearcher(rows), None, RetrievalConfig())) as srv:
        monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", f"http://127.0.0.1:{srv.port}")
        rc = main(
            ["sft", "--model", str(tiny_model_dir), "--train", str(train), "--output", str(tmp_path / "o")]
        )
    assert rc == 2 and "no oracle trajectories" in capsys.readouterr().err
