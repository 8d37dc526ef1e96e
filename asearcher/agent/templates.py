"""Prompt templates are files: a name in asearcher/agent/prompts/ or a path to the user's own file.

Placeholders are `{name}` (write `{{` / `}}` for literal braces). Each agent role declares which
placeholders it may use and which it must use, so a typo in a user's template is an error naming the file
and the placeholder instead of a silently wrong prompt. Every template's sha256 is kept; an agent's
`prompt_hash` combines the hashes of all templates it uses and is stored with every result.
"""

from __future__ import annotations

import difflib
import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asearcher.errors import UserFacingError

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


class TemplateError(UserFacingError, ValueError):
    """A prompt template that cannot be found, parsed or rendered; the message names the file."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # what the config said (a bundled name or a path)
    path: Path
    text: str
    placeholders: frozenset[str]
    sha256: str

    def render(self, **values: object) -> str:
        missing = sorted(self.placeholders - values.keys())
        if missing:
            raise TemplateError(
                f"prompt template {self.path}: no value for placeholder(s) {', '.join('{' + m + '}' for m in missing)}"
            )
        try:
            return self.text.format(**{k: values[k] for k in self.placeholders})
        except (ValueError, IndexError, KeyError) as e:  # pragma: no cover - rejected at load time
            raise TemplateError(f"prompt template {self.path}: cannot render: {e}") from None


def available_templates() -> list[str]:
    return sorted(p.name for p in PROMPTS_DIR.glob("*.txt"))


def resolve_template_path(name: str) -> Path:
    """A bundled template name (with or without .txt) or a path to a file."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    for cand in (PROMPTS_DIR / name, PROMPTS_DIR / f"{name}.txt"):
        if cand.is_file():
            return cand
    names = available_templates()
    close = difflib.get_close_matches(name if name.endswith(".txt") else f"{name}.txt", names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise TemplateError(
        f"prompt template {name!r} not found: it is neither a file nor one of the bundled templates in "
        f"{PROMPTS_DIR} ({', '.join(names)}).{hint}"
    )


def _placeholders(text: str, path: Path) -> frozenset[str]:
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as e:
        raise TemplateError(f"prompt template {path}: {e} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, conv in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conv:
            raise TemplateError(
                f"prompt template {path}: placeholder {{{field}{'!' + conv if conv else ''}"
                f"{':' + spec if spec else ''}}} is not a plain {{name}} (write {{{{ and }}}} for literal braces)"
            )
        names.add(field)
    return frozenset(names)


def load_template(
    name: str,
    *,
    allowed: set[str] | frozenset[str] | None = None,
    required: set[str] | frozenset[str] = frozenset(),
    role: str = "template",
) -> PromptTemplate:
    """Load and check a template. `allowed`: placeholders the role supplies; `required`: ones it must use."""
    path = resolve_template_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"prompt template {path} ({role}): cannot read: {e}") from None
    names = _placeholders(text, path)
    if allowed is not None:
        unknown = sorted(names - set(allowed))
        if unknown:
            hints = []
            for u in unknown:
                close = difflib.get_close_matches(u, sorted(allowed), n=1)
                hints.append("{" + u + "}" + (f" (did you mean {{{close[0]}}}?)" if close else ""))
            raise TemplateError(
                f"prompt template {path} ({role}): unknown placeholder(s) {', '.join(hints)}; "
                f"this role supplies {', '.join('{' + a + '}' for a in sorted(allowed)) or 'none'}"
            )
    missing = sorted(set(required) - names)
    if missing:
        raise TemplateError(
            f"prompt template {path} ({role}): must contain {', '.join('{' + m + '}' for m in missing)}"
        )
    return PromptTemplate(
        name=name,
        path=path,
        text=text,
        placeholders=names,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def combine_hashes(templates: Mapping[str, PromptTemplate]) -> str:
    """One sha256 over (role, template sha256) pairs, sorted by role: changes when any template changes."""
    h = hashlib.sha256()
    for role in sorted(templates):
        h.update(f"{role}:{templates[role].sha256}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class RoleSpec:
    default: str  # bundled template name
    allowed: frozenset[str]
    required: frozenset[str] = frozenset()


def load_role_templates(
    specs: Mapping[str, RoleSpec],
    overrides: Mapping[str, str],
    *,
    agent: str,
) -> dict[str, PromptTemplate]:
    """Load every role's template, with `overrides` (role -> name/path) from the config."""
    unknown = sorted(set(overrides) - set(specs))
    if unknown:
        parts = []
        for u in unknown:
            close = difflib.get_close_matches(u, sorted(specs), n=1)
            parts.append(repr(u) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TemplateError(
            f"agent.templates: unknown role(s) {', '.join(parts)} for agent {agent!r}; "
            f"its roles are {', '.join(sorted(specs))}"
        )
    return {
        role: load_template(
            overrides.get(role, spec.default),
            allowed=spec.allowed,
            required=spec.required,
            role=f"{agent} {role}",
        )
        for role, spec in specs.items()
    }
