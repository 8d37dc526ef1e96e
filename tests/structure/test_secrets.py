"""The secrets registry and its one redaction step (asearcher.utils.secrets): which environment variables count
as secrets, the forms a secret is matched in, JSON rows, the logging filter (message args, exception text) and
the boundaries that use it (CLI error line, uncaught tracebacks, saved RL rollouts)."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import secrets as pysecrets
import sys
from urllib.parse import quote

import pytest

from asearcher.utils import secrets as sec
from asearcher.utils.secrets import PLACEHOLDER, redact, redact_obj


def _canary(prefix: str = "sk-unit") -> str:
    return f"{prefix}-{pysecrets.token_hex(10)}"


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
     "GITHUB_PAT", "serper_api_key", "WANDB_APIKEY", "ANTHROPIC_KEY", "MY_SECRET", "SMTP_PASSWD"],
)  # fmt: skip
def test_secret_looking_names(name):
    assert sec.looks_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["TOKENIZERS_PARALLELISM", "MAX_TOKENS", "PATH", "HOME", "KEYBOARD", "RAY_AUTH_MODE", "HF_HUB_OFFLINE",
     "ASEARCHER_RETRIEVAL_URL", "SSH_AUTH_SOCK", "PASSAGE_DIR", "MONKEY_BUSINESS", "HF_TOKEN_PATH",
     "SSL_KEY_FILE", "AWS_ACCESS_KEY_ID", "OAUTH_TOKEN_URL"],
)  # fmt: skip
def test_ordinary_names(name):
    assert not sec.looks_secret_name(name)


def test_environment_scan_takes_secret_names_of_useful_length():
    long_key, short, other = _canary(), "abc", _canary("not-secret")
    env = {"SOME_API_KEY": long_key, "HF_TOKEN": short, "EMPTY_TOKEN": "", "PLAIN_VALUE": other}
    assert sec.register_environ(env) == 1
    assert redact(f"x {long_key} y") == f"x {PLACEHOLDER} y"
    assert redact(f"{other} abc") == f"{other} abc"  # not a secret's name; too short to be one


def test_registry_and_every_form_of_a_secret(monkeypatch):
    key = _canary() + "+/="
    assert not sec.register("short") and not sec.register(None)
    n = sec.known_count()
    assert sec.register(key) and sec.register(key) and sec.known_count() == n + 1
    b64 = base64.b64encode(key.encode()).decode()
    text = f"raw {key} | url {quote(key, safe='')} | b64 {b64} | json {json.dumps({'k': key})}"
    red = redact(text)
    assert key not in red and quote(key, safe="") not in red and b64 not in red
    assert red.count(PLACEHOLDER) == 4
    assert redact(None) is None and redact(12) == 12
    monkeypatch.setenv("H10_UNIT_CRED", env_key := _canary())
    assert sec.register_env("H10_UNIT_CRED") == env_key and redact(env_key) == PLACEHOLDER
    assert sec.register_env("H10_UNSET_VARIABLE_XYZ") is None


def test_redact_obj_rewrites_strings_and_keys_and_keeps_clean_rows_as_they_are():
    key = _canary()
    sec.register(key)
    row = {
        "id": "q1",
        "ids": list(range(50)),
        "error": f"HTTP 500: Bearer {key}",
        key: [f"a{key}b", 3.5, None],
    }
    out = redact_obj(row)
    assert key not in json.dumps(out) and out["ids"] == list(range(50))
    assert out["error"] == f"HTTP 500: Bearer {PLACEHOLDER}"
    assert out[PLACEHOLDER] == [f"a{PLACEHOLDER}b", 3.5, None]
    assert key in row["error"]  # the input is not modified
    clean = {"id": "q2", "ids": [1, 2, 3]}
    assert redact_obj(clean) is clean


def _logger(name: str) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    lg = logging.getLogger(name)
    lg.handlers[:] = [ListHandler()]
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    return lg, lines


def test_log_filter_redacts_message_args_and_exception_text():
    key = _canary()
    sec.register(key)
    lg, lines = _logger("tests.secrets.filter")
    sec.install_log_redaction(lg)
    sec.install_log_redaction(lg)  # idempotent: one filter per handler
    assert sum(isinstance(f, sec.SecretRedactor) for f in lg.handlers[0].filters) == 1
    lg.warning("retrying after: %s", f"HTTP 500: Bearer {key}")
    lg.info("plain %d", 3)
    try:
        raise RuntimeError(f"endpoint said {key}")
    except RuntimeError:
        lg.exception("call failed for %r", {"auth": key})
    text = "\n".join(lines)
    assert key not in text and text.count(PLACEHOLDER) == 3
    assert "retrying after: HTTP 500: Bearer " in text and "plain 3" in text
    assert "Traceback" in text and "RuntimeError: endpoint said" in text
    seen: list[logging.LogRecord] = []
    lg.handlers[0].addFilter(lambda r: seen.append(r) or True)
    try:
        raise KeyError("nothing secret")
    except KeyError:
        lg.exception("clean")
    assert seen[-1].exc_info is not None  # a record without a secret is left as it was


def test_uncaught_traceback_is_printed_redacted(capsys):
    key = _canary()
    sec.register(key)
    try:
        raise ValueError(f"bad key {key}")
    except ValueError as e:
        sec._redacting_excepthook(type(e), e, e.__traceback__)
    err = capsys.readouterr().err
    assert "ValueError: bad key " + PLACEHOLDER in err and key not in err and "Traceback" in err


def test_cli_error_line_is_redacted(tmp_path, capsys):
    from asearcher.cli import main

    key = _canary()
    sec.register(key)
    hook = sys.excepthook
    try:
        rc = main(["eval", "--model", "m", "--benchmark", "Bamboogle", "--releases", str(tmp_path / key)])
    finally:
        sys.excepthook = hook
    err = capsys.readouterr().err
    assert rc == 2 and "asearcher eval: error:" in err and PLACEHOLDER in err and key not in err


def test_saved_rl_rollouts_are_redacted(tmp_path):
    from asearcher.agent.trajectory import ToolCall
    from asearcher.config.rl import SaveRolloutsConfig
    from asearcher.rl.system.rollout_log import RolloutLog, rollout_path
    from tests.rl.support import group, llm, traj

    key = _canary()
    sec.register(key)
    failed = ToolCall("search", "q", False, None, error=f"retrieval said {key}")
    t = traj("a", [llm([1], [2], text=f"echo {key}"), failed], prediction="x")
    RolloutLog(tmp_path, SaveRolloutsConfig(per_version=1)).write(0, [group("a", [(t, 1.0)])])
    text = gzip.decompress(rollout_path(tmp_path, 0).read_bytes()).decode()
    assert key not in text and text.count(PLACEHOLDER) == 2
