"""The config loader on arbitrary input: any file (bytes, YAML-ish text, nested values at real keys) and any
`--set` override gives a Config or a clear error (a UserFacingError naming the file, line or override), never a
crash; a value of the right type at a real key is what the loaded config holds."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asearcher.config import Config, ConfigError, load_config
from asearcher.config.base import Section
from asearcher.errors import UserFacingError

SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _section(annotation) -> type[Section] | None:
    """The Section class of a field typed `Section` or `Section | None`."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, Section)]
        return found[0] if found else None
    return None


def _leaves(model: type[Section], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, field in model.model_fields.items():
        sub = _section(field.annotation)
        out.extend(_leaves(sub, (*prefix, name)) if sub else [(*prefix, name)])
    return out


LEAVES = _leaves(Config)
DEFAULTS = Config()


def _default(path: tuple[str, ...]):
    obj = DEFAULTS
    for p in path:
        obj = getattr(obj, p, None)
    return obj


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(["", "{results_dir}/m", "1e3", "0x10", "yes", "~", "2020-01-01", "bm25", "local", "hub"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.booleans()), inner, max_size=3)
    ),
    max_leaves=6,
)
real_keys = st.sampled_from(LEAVES)
any_keys = st.one_of(real_keys, st.lists(st.text(max_size=5), min_size=1, max_size=3).map(tuple))

YAMLISH = [
    ":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!float ", "!!python/object:os.system ",
    "!!binary ", "!!set ", "<<: ", "---\n", "? ", "'", '"', "#", "\t", "\n", "  ", "%YAML 1.1\n", "|\n",
    "2020-13-45", "0x", "1e400", ".nan", "~", "yes", "name", "rl", "steps", "eval", "k", "models",
    "\ud800", "\x00", "\ufeff", "é",
]  # fmt: skip
yamlish_text = st.lists(st.one_of(st.sampled_from(YAMLISH), st.text(max_size=4)), max_size=25).map("".join)


def _nest(items: list[tuple[tuple[str, ...], object]]) -> dict:
    """Nested mapping from (path, value) pairs; a later path through an earlier leaf replaces it."""
    raw: dict = {}
    for path, value in items:
        cur = raw
        for p in path[:-1]:
            if not isinstance(cur.get(p), dict):
                cur[p] = {}
            cur = cur[p]
        cur[path[-1]] = value
    return raw


def _flat(raw: dict, prefix: tuple = ()) -> list[tuple[tuple, object]]:
    out = []
    for k, v in raw.items():
        out.extend(_flat(v, (*prefix, k)) if isinstance(v, dict) and v else [((*prefix, k), v)])
    return out


def _check_loaded(cfg: Config, raw: dict) -> None:
    """A value of exactly the default's type at a real leaf is what the config holds."""
    for path, value in _flat(raw):
        if path not in LEAVES:
            continue
        default = _default(path)
        if type(value) is not type(default) or type(value) not in (str, int, bool, float):
            continue
        if isinstance(value, str) and "{" in value:
            continue  # model paths expand {results_dir} placeholders
        got = _get(cfg, path)
        assert got == value or (value != value and got != got), (path, value, got)


def _get(cfg: Config, path: tuple[str, ...]):
    obj = cfg
    for p in path:
        obj = getattr(obj, p)
    return obj


def _load(path: Path | None, overrides: list[str] | None = None) -> Config | None:
    """load_config; None for a clear error (its message must name the source), anything else propagates."""
    try:
        return load_config(path, overrides)
    except UserFacingError as e:
        msg = str(e)
        assert msg.strip(), "empty error message"
        if path is not None and not overrides:
            assert str(path) in msg, msg
        elif overrides and not path:
            assert "override" in msg or "<defaults>" in msg, msg
        return None


@pytest.fixture
def cfg_file(tmp_path) -> Path:
    return tmp_path / "c.yaml"


@SETTINGS
@given(st.binary(max_size=200))
@example(b"? [a]\n: 1\n")  # an unhashable key: ConstructorError escaped
@example(b"name: 2020-13-45\n")  # a date that is not one: ValueError escaped
@example(b"seed: !!float abc\n")
@example(b"models: &a {x: *a}\n")  # a mapping that contains itself: RecursionError in the line walk
@example(b"data: {<<: 3}\n")
@example(b"name: !!python/object:os.system x\n")
def test_any_bytes(cfg_file, data):
    cfg_file.write_bytes(data)
    _load(cfg_file)


@SETTINGS
@given(yamlish_text)
@example("!!float ")  # an empty float: IndexError inside PyYAML
def test_yamlish_text(cfg_file, text):
    cfg_file.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load(cfg_file)


@SETTINGS
@given(st.lists(st.tuples(any_keys, values), max_size=6))
def test_nested_values_at_real_keys(cfg_file, items):
    raw = _nest(items)
    cfg_file.write_text(yaml.safe_dump(raw, allow_unicode=True) if raw else "{}\n")
    try:
        cfg = load_config(cfg_file)
    except ConfigError as e:
        msg = str(e)
        assert str(cfg_file) in msg, msg
        if msg.startswith("invalid config"):  # every offending key is named with its line in the file
            for line in msg.split("\n")[1:]:
                assert line.startswith("  ") and "(line " in line, msg
        return
    _check_loaded(cfg, raw)


@SETTINGS
@given(st.lists(st.tuples(any_keys, values), max_size=4), st.lists(st.text(max_size=20), max_size=2))
def test_any_overrides(items, junk):
    overrides = [
        ".".join(path) + "=" + yaml.safe_dump(v, default_flow_style=True).strip() for path, v in items
    ]
    overrides += junk
    cfg = _load(None, overrides)
    if cfg is not None and not junk:
        _check_loaded(
            cfg,
            _nest(
                [(p, yaml.safe_load(o.split("=", 1)[1])) for (p, _), o in zip(items, overrides, strict=True)]
            ),
        )


def test_regressions_are_clear_errors(tmp_path):
    """Found by the tests above: each was a traceback (ConstructorError, ValueError, IndexError, RecursionError,
    YAML ParserError from an override) instead of an error naming the file and line or the override."""
    cases = {
        "? [a]\n: 1\n": r"c.yaml is not valid YAML: line 1: .*unhashable key",
        "seed: 1\nname: 2020-13-45\n": r"c.yaml is not valid YAML: line 2: cannot read this value: ValueError: month must be",
        "seed: !!float abc\n": r"line 1: cannot read this value",
        "seed: 1\nname: !!float\n": r"line 2: cannot read this value: IndexError",
        "name: x\nmodels: &a {x: *a}\n": r"models.x.x: unknown key \(line 2\)",
        "data: {<<: 3}\n": r"line 1: .*expected a mapping or list of mappings for merging",
        "name: !!python/object:os.system x\n": r"line 1: could not determine a constructor",
        "name: " + "[" * 700 + "]" * 700 + "\n": r"c.yaml: YAML nested too deeply",
        "1: 2\n~: 3\n": r"  1: Keys should be strings \(got 1\) \(line 1\)\n  None: .* \(line 2\)",
    }
    p = tmp_path / "c.yaml"
    for text, pattern in cases.items():
        p.write_text(text)
        with pytest.raises(ConfigError, match=pattern):
            load_config(p)
    for override, pattern in {
        "rl.steps=[": r"override 'rl.steps=\[': the value is not valid YAML: line 1",
        "seed=2020-13-45": r"override 'seed=2020-13-45': the value is not valid YAML: line 1: cannot read",
        "seed=" + "[" * 700: r"the value: YAML nested too deeply",
        "=3": r"override '=3': the key '' has an empty part",
        "rl..steps=3": r"the key 'rl..steps' has an empty part",
    }.items():
        with pytest.raises(ConfigError, match=pattern):
            load_config(None, [override])


def test_merge_keys_are_not_duplicates(tmp_path):
    """A mapping that merges an anchor and then sets one of its keys is the usual YAML override, not a duplicate."""
    p = tmp_path / "c.yaml"
    p.write_text("models:\n  a: &base {model: m1, kind: transformers}\n  b:\n    <<: *base\n    model: m2\n")
    cfg = load_config(p)
    assert cfg.models["b"].model == "m2" and cfg.models["b"].kind == "transformers"
