"""Prompt templates: files chosen by config, checked placeholders, hashes that follow the text."""

from __future__ import annotations

import hashlib

import pytest

from asearcher.agent import make_agent
from asearcher.agent.registry import UnknownAgentError, agent_class
from asearcher.agent.templates import (
    PROMPTS_DIR,
    TemplateError,
    available_templates,
    combine_hashes,
    load_template,
)
from asearcher.config import AgentConfig, config_from_dict
from tests.agent.doubles import make_tokenizer


def test_bundled_templates_load_and_hash():
    names = available_templates()
    assert "asearcher.txt" in names and "search_r1.txt" in names
    t = load_template("asearcher")  # name without .txt
    assert t.path == PROMPTS_DIR / "asearcher.txt"
    assert t.sha256 == hashlib.sha256(t.path.read_bytes()).hexdigest()
    assert t.placeholders == {"question", "validity_note"}
    out = t.render(question="Who wrote Hamlet?", validity_note="NOTE")
    assert "Who wrote Hamlet?" in out and "NOTE" in out and out.rstrip().endswith("<think>")
    so = load_template("asearcher_search_only.txt")
    assert "<access>" not in so.text and "<access>" in t.text


def test_every_agent_template_is_own_wording_with_the_tag_protocol():
    for name in ("asearcher.txt", "asearcher_search_only.txt"):
        text = (PROMPTS_DIR / name).read_text()
        for tag in ("<think>", "<search>", "<answer>", "<information>"):
            assert tag in text


def test_user_file_and_errors_name_the_file(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("Q: {question} {{literal}}\n")
    t = load_template(str(own), allowed={"question"}, required={"question"})
    assert t.render(question="x") == "Q: x {literal}\n"

    bad = tmp_path / "typo.txt"
    bad.write_text("Q: {quesiton}\n")
    with pytest.raises(TemplateError) as e:
        load_template(str(bad), allowed={"question", "today"}, required={"question"})
    assert (
        str(bad) in str(e.value)
        and "{quesiton}" in str(e.value)
        and "did you mean {question}" in str(e.value)
    )

    nofield = tmp_path / "nofield.txt"
    nofield.write_text("no placeholders\n")
    with pytest.raises(TemplateError, match="must contain \\{question\\}"):
        load_template(str(nofield), allowed={"question"}, required={"question"})

    broken = tmp_path / "broken.txt"
    broken.write_text("unbalanced { brace {question}\n")
    with pytest.raises(TemplateError, match="broken.txt"):
        load_template(str(broken))

    spec = tmp_path / "spec.txt"
    spec.write_text("{question!r:>10}\n")
    with pytest.raises(TemplateError, match="plain"):
        load_template(str(spec))

    with pytest.raises(TemplateError, match="Did you mean asearcher.txt"):
        load_template("asearchr")

    with pytest.raises(TemplateError, match="no value for placeholder"):
        load_template("search_r1").render()


def test_agent_prompt_hash_combines_all_templates(tmp_path):
    tok = make_tokenizer()
    base = make_agent(AgentConfig(), tok)
    assert base.prompt_hash == combine_hashes(base.templates)
    assert set(base.templates) == {"prompt", "note_invalid", "note_valid", "invalid"}
    # changing any one template (here the validity note) changes the agent's hash
    note = tmp_path / "note.txt"
    note.write_text("A different note.\n")
    other = make_agent(AgentConfig(templates={"note_valid": str(note)}), tok)
    assert other.prompt_hash != base.prompt_hash
    # `template` overrides the first role; the search-only default differs from the access one
    own = tmp_path / "p.txt"
    own.write_text("{question}\n<think>\n")
    assert make_agent(AgentConfig(template=str(own)), tok).templates["prompt"].path == own
    assert make_agent(AgentConfig(allow_access=False), tok).prompt_hash != base.prompt_hash
    hashes = {
        make_agent(AgentConfig(kind=k), tok).prompt_hash
        for k in ("asearcher", "asearcher-reasoning", "search-r1")
    }
    assert len(hashes) == 3


def test_bad_roles_and_kinds_are_clear_errors(tmp_path):
    tok = make_tokenizer()
    with pytest.raises(TemplateError, match="did you mean 'read_page'"):
        make_agent(AgentConfig(kind="asearcher-reasoning", templates={"read_pages": "x.txt"}), tok)
    bad = tmp_path / "act.txt"
    bad.write_text("{question} {history} {page}\n")
    with pytest.raises(TemplateError, match="unknown placeholder"):
        make_agent(AgentConfig(kind="asearcher-reasoning", template=str(bad)), tok)
    with pytest.raises(UnknownAgentError, match="Did you mean 'search-r1'"):
        agent_class("search_r1")
    # the config itself rejects unknown keys and kinds
    with pytest.raises(Exception, match="agent.kind"):
        config_from_dict({"agent": {"kind": "nope"}})
