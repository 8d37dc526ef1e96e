"""The typed config: strict keys and types, overrides, merged dump, and the committed JSON schema in sync."""

from __future__ import annotations

import re

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from asearcher.config import Config, ConfigError, json_schema, load_config

REPO = Path(__file__).resolve().parents[2]
# run configs (configs/sweeps/ holds sweep tables, validated by tests/workflow/test_sweeps.py)
RECIPES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "sweeps" not in p.parts)


def test_schema_file_matches_models():
    committed = json.loads((REPO / "workflow/schemas/config.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "workflow/schemas/config.schema.json is stale: run "
        "`asearcher config schema --output workflow/schemas/config.schema.json`"
    )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_validates_in_both_validators(path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    jsonschema.validate(raw, json_schema())  # what the Snakefile checks
    assert cfg.name == raw["name"]


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("rl:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"rl\.stepz: unknown key"):
        load_config(p)
    with pytest.raises(jsonschema.ValidationError, match="stepz"):
        jsonschema.validate(yaml.safe_load(p.read_text()), json_schema())


def test_wrong_type_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("retrieval:\n  topk: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "retrieval.topk" in str(e.value) and str(p) in str(e.value)


def test_malformed_yaml_names_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("rl: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_overrides_are_typed_and_checked():
    cfg = load_config(None, ["rl.steps=7", "eval.benchmarks=[Bamboogle]", "rl.sft.enabled=true"])
    assert cfg.rl.steps == 7 and cfg.eval.benchmarks == ["Bamboogle"] and cfg.rl.sft.enabled is True
    with pytest.raises(ConfigError, match="rl.steps"):
        load_config(None, ["rl.steps=-1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["rl.steps"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(REPO / "configs/default.yaml", ["seed=5"])
    cfg.dump(tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg and again.seed == 5


def test_mirror_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ASEARCHER_MIRROR", str(tmp_path))
    assert Config().mirror_dir() == tmp_path
    assert Config.model_validate({"data": {"mirror": "/x"}}).mirror_dir() == Path("/x")


# ---- the config file itself: encoding, duplicates, emptiness, line numbers (issue 10) ---------------------------
def test_config_file_defects_are_clear_errors(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml:1: not valid UTF-8 \(byte 0xe9"):
        load_config(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text("rl:\n  steps: 5\n  batch_size: 2\n  steps: 7\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:4: duplicate key 'rl.steps' \(first set on line 2\)"):
        load_config(dup)
    for text in ("", "\n# only a comment\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        with pytest.raises(ConfigError, match="is empty"):
            load_config(empty)
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\nrl:\n  steps: 5\n  batch_sise: 2\nagent:\n  topk: -1\n")
    with pytest.raises(ConfigError) as e:
        load_config(typo)
    msg = str(e.value)
    assert "rl.batch_sise: unknown key (line 4)" in msg and re.search(r"agent\.topk: .*\(line 6\)", msg), msg
    # overrides have no line: the key alone
    with pytest.raises(ConfigError, match=r"  rl.steps: "):
        load_config(None, ["rl.steps=-1"])
