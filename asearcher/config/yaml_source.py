"""Reading a config file: strict UTF-8, no duplicate keys, not empty, and the line of every key, so that errors
can say where in the file the offending key is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from asearcher.errors import UserFacingError

KeyLines = dict[tuple[str, ...], int]  # dotted key path -> 1-based line in the file


class ConfigFileError(UserFacingError, ValueError):
    pass


def _walk(node: yaml.Node, prefix: tuple[str, ...], lines: KeyLines, where: str) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            dotted = ".".join((*prefix, key))
            raise ConfigFileError(
                f"{where}:{line}: duplicate key {dotted!r} (first set on line {seen[key]}); YAML would silently "
                "keep only the last one, so remove one of them"
            )
        seen[key] = line
        lines[(*prefix, key)] = line
        _walk(value_node, (*prefix, key), lines, where)


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
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigFileError(f"config {where} is not valid YAML: {e}") from None
    if node is None:
        raise ConfigFileError(
            f"config {where} is empty (no settings): add settings, or leave out --config to use the defaults"
        )
    lines: KeyLines = {}
    _walk(node, (), lines, where)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigFileError(f"config {where}: top level must be a mapping, got {type(raw).__name__}")
    return raw, lines
