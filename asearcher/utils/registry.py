"""One small name -> object registry for agents, engines, trainers and benchmarks.

A wrong name is a UserFacingError that names the config key, lists what is known and suggests the closest
spelling. Entries may be lazy ("module:attribute"), so a registry of engines or trainers does not import vLLM or
DeepSpeed until that one is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from asearcher.errors import UserFacingError

T = TypeVar("T")


class UnknownNameError(UserFacingError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


def load_object(spec: str) -> Any:
    """'package.module:attribute' -> the attribute (imported on demand)."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{spec!r}: expected 'package.module:attribute'")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names (and aliases) -> objects. `what` names the kind of thing in errors ("agent"); `key` is the config key
    that selects it ("agent.kind"), put first in the error; `show` formats a name in the suggestion."""

    def __init__(
        self,
        what: str,
        *,
        key: str | None = None,
        case_insensitive: bool = False,
        show: Callable[[str], str] = repr,
        error: type[UnknownNameError] = UnknownNameError,
    ):
        self.what, self.key, self.show, self.error = what, key, show, error
        self._fold = str.lower if case_insensitive else (lambda s: s)
        self._entries: dict[str, T | str] = {}  # canonical name -> object, or "module:attr" until first use
        self._index: dict[str, str] = {}  # folded name or alias -> canonical name

    def register(self, name: str, obj: T | str, *, aliases: tuple[str, ...] | list[str] = ()) -> T | str:
        """Add `obj` (or a lazy 'module:attr' string) under `name` and its aliases; a name taken by another entry
        is an error."""
        for n in (name, *aliases):
            folded = self._fold(n)
            owner = self._index.get(folded)
            if owner is not None and owner != name:
                raise UserFacingError(f"{self.what} name {n!r} is used by both {owner} and {name}")
            self._index[folded] = name
        self._entries[name] = obj
        return obj

    def __call__(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form: @REGISTRY("name")."""

        def deco(obj: T) -> T:
            self.register(name, obj, aliases=aliases)
            return obj

        return deco

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._fold(name) in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def canonical(self, name: str, *, key: str | None = None) -> str:
        """The registered name for `name` (or an alias); `key` overrides the config key named in the error."""
        folded = self._fold(name)
        if folded in self._index:
            return self._index[folded]
        close = difflib.get_close_matches(folded, list(self._index), n=3, cutoff=0.5)
        suggestions = list(dict.fromkeys(self._index[c] for c in close))
        hint = f" Did you mean {', '.join(self.show(s) for s in suggestions)}?" if suggestions else ""
        key = key or self.key
        where = f"{key}: " if key else ""
        raise self.error(
            f"{where}unknown {self.what} {name!r}.{hint} Known: {', '.join(sorted(self._entries, key=str.lower))}."
        ) from None

    def get(self, name: str, *, key: str | None = None) -> T:
        canon = self.canonical(name, key=key)
        obj = self._entries[canon]
        if isinstance(obj, str):  # lazy entry: import now, keep the object
            obj = load_object(obj)
            self._entries[canon] = obj
        return obj  # type: ignore[return-value]

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self._entries]
