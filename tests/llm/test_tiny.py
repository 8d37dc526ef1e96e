"""The tiny-model factory: corpus-trained byte-level BPE with whole tags, a reloadable random-init Qwen2."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from asearcher.cli import main as cli_main
from asearcher.errors import UserFacingError
from asearcher.llm.tiny import CHAT_SPECIAL, META_FILE, TAGS, build_tiny_model
from asearcher.utils.jsonl import iter_jsonl


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_tags_are_single_tokens_that_decode_as_text(tok):
    for tag in TAGS:
        ids = tok.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, (tag, ids)
        # tags survive skip_special_tokens: they are text the agent parses, not control tokens
        assert tok.decode(ids, skip_special_tokens=True) == tag
    text = "<think>plan</think>\n<search> Citibank founder </search>"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.convert_tokens_to_ids("<search>") in ids and tok.convert_tokens_to_ids("</search>") in ids
    assert tok.decode(ids) == text


def test_chat_tokens_are_special_and_template_is_chatml(tok):
    for t in CHAT_SPECIAL:
        assert len(tok.encode(t, add_special_tokens=False)) == 1
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_unicode_round_trips(tok, corpus_file):
    samples = ["héllo ✓ 東京 🚀 naïve — Ελληνικά \t\n  spaces", "Ünïcödé <answer> Zürich </answer>"]
    samples += [r["contents"] for r in iter_jsonl(corpus_file, limit=200)]
    for s in samples:
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s


def test_reloaded_tokenizer_matches_raw_tokenizer_file(tok, tiny_model_dir, corpus_file):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    for r in iter_jsonl(corpus_file, limit=50):
        s = r["contents"] + " <search> x </search>"
        assert raw.encode(s, add_special_tokens=False).ids == tok.encode(s, add_special_tokens=False)


def test_model_reloads_bit_identical_and_build_is_deterministic(tiny_model_dir, corpus_file, tiny_model_config,
                                                                tmp_path):  # fmt: skip
    from transformers import AutoModelForCausalLM

    meta = json.loads((tiny_model_dir / META_FILE).read_text())
    saved = load_file(str(tiny_model_dir / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    sd = model.state_dict()
    for k, v in saved.items():
        assert torch.equal(sd[k], v), k
    assert meta["params"] == sum(p.numel() for p in model.parameters())
    assert meta["vocab_size"] == model.config.vocab_size and meta["seed"] == tiny_model_config.seed

    again = build_tiny_model(corpus_file, tmp_path / "again", tiny_model_config)
    assert again["params"] == meta["params"]
    assert (tmp_path / "again" / "tokenizer.json").read_text() == (
        tiny_model_dir / "tokenizer.json"
    ).read_text()
    saved2 = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert all(torch.equal(saved[k], saved2[k]) for k in saved)

    other = build_tiny_model(
        corpus_file, tmp_path / "other", tiny_model_config.model_copy(update={"seed": 1})
    )
    assert other["seed"] == 1
    saved3 = load_file(str(tmp_path / "other" / "model.safetensors"))
    assert not all(torch.equal(saved[k], saved3[k]) for k in saved)


def test_cli_builds_from_config_and_reports_bad_corpus(tmp_path, corpus_file, capsys):
    small = tmp_path / "corpus.jsonl"
    small.write_text("".join(open(corpus_file, encoding="utf-8").readlines()[:60]), encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("tiny_model:\n  vocab_size: 400\n  hidden_size: 32\n  intermediate_size: 64\n")
    out = tmp_path / "m"
    rc = cli_main(["tiny-model", "--corpus", str(small), "--output", str(out), "--config", str(cfg),
                   "--set", "tiny_model.num_hidden_layers=1"])  # fmt: skip
    assert rc == 0
    meta = json.loads((out / META_FILE).read_text())
    assert meta["config"]["hidden_size"] == 32 and meta["config"]["num_hidden_layers"] == 1
    assert meta["corpus_lines"] == 60

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"contents": "ok"}\n{"contents": broken\n')
    with pytest.raises(UserFacingError, match=r"bad\.jsonl:2"):
        build_tiny_model(bad, tmp_path / "x")
    assert (
        cli_main(["tiny-model", "--corpus", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "y")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
