"""Reading a config file: strict UTF-8, no duplicate keys, not empty, and the line of every key, so that errors
can say where in the file the offending key is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from asearcher.errors import UserFacingError

KeyLines = dict[tuple[str, ...], int]  # dotted key path -> 1-based line in the file


class ConfigFileError(UserFacingError, ValueError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (a date like 2020-13-45, `!!float abc`, an empty `!!float`) are YAML errors
    with a line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as e:  # PyYAML's constructors fail with ValueError, IndexError (`!!float ''`), ...
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {type(e).__name__}: {e}", node.start_mark
            ) from None


def _yaml_problem(e: BaseException) -> str:
    """A YAML error as 'line N: what' (PyYAML's own text repeats the snippet and a 'unicode string' name)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
    return f"line {mark.line + 1}: {what}" if mark is not None else what


def load_yaml(
    text: str, where: str, check: Callable[[_Loader, yaml.Node], None] | None = None
) -> tuple[Any, yaml.Node | None]:
    """(value, node) of one YAML document, `check` run on the node before it is constructed (construction
    rewrites merge keys); ConfigFileError naming `where` and the line for anything unreadable: bad syntax,
    several documents, unknown or python tags, unconstructable values, nesting too deep."""
    loader = None
    try:
        loader = _Loader(text)  # checks the characters: a control character is an error here
        node = loader.get_single_node()
        if node is None:
            return None, None
        if check is not None:
            check(loader, node)
        return loader.construct_document(node), node
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{where} is not valid YAML: {_yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigFileError(f"{where}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _key(loader: _Loader, key_node: yaml.Node) -> str:
    """A key as the validator names it: the constructed value (`1`, `null`, `yes` -> "1", "None", "True")."""
    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
        return str(loader.construct_object(key_node))
    return str(key_node.value)


def _walk(
    loader: _Loader,
    node: yaml.Node,
    prefix: tuple[str, ...],
    lines: KeyLines,
    where: str,
    seen_nodes: set[int],
) -> None:
    if not isinstance(node, yaml.MappingNode) or id(node) in seen_nodes:
        return  # an alias repeats a node already walked (and may refer to itself)
    seen_nodes.add(id(node))
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = _key(loader, key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            dotted = ".".join((*prefix, key))
            raise ConfigFileError(
                f"{where}:{line}: duplicate key {dotted!r} (first set on line {seen[key]}); YAML would silently "
                "keep only the last one, so remove one of them"
            )
        seen[key] = line
        lines[(*prefix, key)] = line
        _walk(loader, value_node, (*prefix, key), lines, where, seen_nodes)


def read_config_file(path: str | Path) -> tuple[dict[str, Any], KeyLines]:
    """The mapping in a YAML config file and the line of each key; ConfigFileError for a file that cannot be read,
    is not UTF-8, is empty, is not valid YAML, has a duplicate key, or is not a mapping at the top."""
    where = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigFileError(f"cannot read config {where}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigFileError(
            f"{where}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None
    lines: KeyLines = {}
    raw, node = load_yaml(text, f"config {where}", lambda ld, n: _walk(ld, n, (), lines, where, set()))
    if node is None:
        raise ConfigFileError(
            f"config {where} is empty (no settings): add settings, or leave out --config to use the defaults"
        )
    if not isinstance(raw, dict):
        raise ConfigFileError(f"config {where}: top level must be a mapping, got {type(raw).__name__}")
    return raw, lines
