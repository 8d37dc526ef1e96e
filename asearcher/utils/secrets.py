"""Secrets the process read from the environment, and one redaction step applied wherever text leaves it.

A server can echo a request's Authorization header back in an error body (or in a 200 that is not what the
client expected); that body then travels in exception messages into log records, result rows and files. Rather
than redacting branch by branch, everything that may carry such text passes `redact` (strings) or `redact_obj`
(JSON-like rows) at the boundary: the log handlers (`install_log_redaction`), uncaught-exception tracebacks
(`install_excepthook`), the eval / rollout writers and the error messages of engines, tools and the judge.

What counts as a secret:
- every value registered by the code that reads one (`register(value)`; e.g. OpenAIEngine's `api_key_env`);
- the values of environment variables whose names look like secrets (`looks_secret_name`: *_API_KEY, *_KEY,
  *_TOKEN, *_SECRET*, *PASSWORD*, ...; not *_FILE, *_PATH, *_URL, *_ID ...), read once on first use (or again
  with `register_environ()`).
Values shorter than MIN_SECRET_LEN characters are ignored: they would mask ordinary words ("EMPTY", "none",
"1") and protect nothing. Each secret is also matched in its URL-encoded, JSON-escaped and base64 forms.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

PLACEHOLDER = "[redacted]"
MIN_SECRET_LEN = 8

# name parts (split at "_") that mark a secret: OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD ...
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|ACCESS_?KEY|PRIVATE_?KEY|TOKEN|SECRET|SECRET_?KEY|PASSWORD|PASSWD|PASS|PAT)(?:_|$)"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_forms: tuple[str, ...] = ()  # every matched form of every secret, longest first
_env_scanned = False


# ... unless another part says the value is where a secret lives or what it is called (HF_TOKEN_PATH, SSL_KEY_FILE)
_NOT_SECRET_PARTS = frozenset(
    {"FILE", "PATH", "DIR", "URL", "URI", "HOST", "PORT", "ID", "NAME", "MODE", "TYPE", "LEN", "LENGTH"}
)


def looks_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (case-insensitive)."""
    upper = name.upper()
    return bool(_SECRET_NAME.search(upper)) and not _NOT_SECRET_PARTS.intersection(upper.split("_"))


def _variants(secret: str) -> set[str]:
    out = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    out.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    out.add(repr(secret)[1:-1])
    b64 = base64.b64encode(secret.encode("utf-8")).decode("ascii")
    out.update({b64, b64.rstrip("=")})
    return {v for v in out if len(v) >= MIN_SECRET_LEN}


def register(value: str | None) -> bool:
    """Treat `value` as a secret from now on; False (and nothing registered) when it is too short to be one."""
    global _forms
    if not value or len(value.strip()) < MIN_SECRET_LEN:
        return False
    value = value.strip()
    with _lock:
        if value not in _secrets:
            _secrets.add(value)
            forms = {f for s in _secrets for f in _variants(s)}
            _forms = tuple(sorted(forms, key=len, reverse=True))
    return True


def register_env(name: str) -> str | None:
    """Read environment variable `name`, register its value as a secret and return it (None when unset/empty)."""
    value = os.environ.get(name) or None
    register(value)
    return value


def register_environ(environ: Mapping[str, str] | None = None) -> int:
    """Register the values of every variable whose name looks like a secret's; returns how many were taken."""
    global _env_scanned
    env = os.environ if environ is None else environ
    n = sum(register(v) for k, v in list(env.items()) if looks_secret_name(k))
    if environ is None:
        _env_scanned = True
    return n


def known_count() -> int:
    """How many secrets are registered (never the secrets themselves)."""
    return len(_secrets)


def _current_forms() -> tuple[str, ...]:
    if not _env_scanned:
        register_environ()
    return _forms


def redact(text: Any) -> Any:
    """`text` with every form of every known secret replaced by PLACEHOLDER; non-strings are returned as is."""
    if not isinstance(text, str) or not text:
        return text
    for form in _current_forms():
        if form in text:
            text = text.replace(form, PLACEHOLDER)
    return text


def _walk(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {_walk(k) if isinstance(k, str) else k: _walk(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v) for v in obj]
    return obj


def redact_obj(obj: Any) -> Any:
    """A JSON-like object (dicts, lists, strings, numbers) with `redact` applied to every string, keys included.

    The object is returned unchanged (not copied) when no secret is known or none occurs in it; the check runs
    on its JSON serialisation, so a row of many token ids costs one `json.dumps`."""
    forms = _current_forms()
    if not forms:
        return obj
    try:
        blob = json.dumps(obj, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return _walk(obj)
    if not any(f in blob for f in forms):
        return obj
    return _walk(obj)


class SecretRedactor(logging.Filter):
    """Redacts known secrets from log records (message with its args, exception and stack text) as they reach
    a handler. Install on handlers (not loggers): handler filters see records from every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _current_forms():
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        red = redact(msg)
        if red != msg:
            record.msg, record.args = red, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            red = redact(text)
            if red != text:  # rendered here, so no handler formats the raw exception again
                record.exc_text, record.exc_info = red, None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = SecretRedactor()


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add the redaction filter to every handler of `logger` (default: the root logger) and to logging's
    last-resort handler (used when no handler is configured, e.g. in a Ray worker). Idempotent; also reads the
    environment's secrets now."""
    register_environ()
    target = logger or logging.getLogger()
    handlers = list(target.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for h in handlers:
        if not any(isinstance(f, SecretRedactor) for f in h.filters):
            h.addFilter(_FILTER)


def _redacting_excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact(text))


def install_excepthook() -> None:
    """Print uncaught exceptions' tracebacks redacted (same text otherwise). Idempotent."""
    if sys.excepthook is not _redacting_excepthook and sys.excepthook is sys.__excepthook__:
        sys.excepthook = _redacting_excepthook


__all__ = [
    "MIN_SECRET_LEN",
    "PLACEHOLDER",
    "SecretRedactor",
    "install_excepthook",
    "install_log_redaction",
    "known_count",
    "looks_secret_name",
    "redact",
    "redact_obj",
    "register",
    "register_env",
    "register_environ",
]
