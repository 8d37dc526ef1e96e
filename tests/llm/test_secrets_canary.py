"""Canary keys never reach a file or stderr, whatever a misbehaving server echoes back (issue 10, Secrets).

One real HTTP server on 127.0.0.1 plays three parts, each echoing the key it saw (the Authorization header) or
a key it knows, in every broken way: the agent's OpenAI-compatible completions endpoint, the judge's chat
endpoint, and the retrieval server. `asearcher eval` runs as a subprocess (the real CLI) with canary keys in its
environment; the failure mode of each request is chosen by the question it is about, so one run covers every
engine, judge and tool error path. Then every file the run wrote and its stderr are searched for the canaries
(raw and URL-encoded), and each error is checked to have been recorded (so the test cannot pass vacuously).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from asearcher.llm.engine import GenerationRequest, SamplingParams
from asearcher.llm.openai_engine import EndpointError, OpenAIEngine

REPO = Path(__file__).resolve().parents[2]

# a key as hosted APIs issue them, plus characters that URL-encoding changes
LLM_KEY = f"sk-canary-llm-{secrets.token_hex(12)}+{secrets.token_hex(3)}/="
JUDGE_KEY = f"sk-canary-judge-{secrets.token_hex(12)}"
TOOLS_KEY = f"tok-canary-tools-{secrets.token_hex(12)}"  # known only to the server and the env (by its name)
CANARIES = (LLM_KEY, JUDGE_KEY, TOOLS_KEY)

# failure mode per question (Bamboogle order). LLM modes 0-4 fail the agent's completion; "ok" questions
# search or open a page (the tool mode) and answer, then the judge call fails (the judge mode).
PLAN = [
    {"llm": "nonjson"},
    {"llm": "nochoices"},
    {"llm": "401"},
    {"llm": "500"},
    {"llm": "closed"},
    {"llm": "ok", "tool": "search-400", "judge": "nonjson"},
    {"llm": "ok", "tool": "search-500", "judge": "nochoices"},
    {"llm": "ok", "tool": "access-500", "judge": "nomessage"},
    {"llm": "ok", "tool": "access-400", "judge": "403"},
    {"llm": "ok", "tool": "search-closed", "judge": "500"},
    {"llm": "ok", "tool": "search-nonjson", "judge": "closed"},
]
LLM_ERRORS = {  # what the recorded error says, per mode
    "nonjson": "non-JSON body",
    "nochoices": "without choices",
    "nomessage": "without a message",
    "401": "HTTP 401",
    "403": "HTTP 403",
    "500": "failed after",
    "closed": "failed after",
}
CHAT_ERRORS = {**LLM_ERRORS, "nochoices": "without a message"}  # one branch for both in achat
ECHOING = {"nonjson", "nochoices", "nomessage", "401", "403", "500"}  # the body quoted in the error


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).lower()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _cut_off(self, echo: str) -> None:
        """Headers promise 4096 bytes; part of the body is sent, then the connection is closed."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "4096")
        self.end_headers()
        self.wfile.write(f'{{"choices": [{{"text": "{echo}'.encode())
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _fail(self, mode: str, echo: str) -> None:
        if mode == "nonjson":
            self._send(200, f"<html>proxy error; your request had {echo}</html>", "text/html")
        elif mode == "nochoices":
            self._send(200, json.dumps({"object": "error", "echo": echo}))
        elif mode == "nomessage":
            self._send(200, json.dumps({"choices": [{"index": 0, "debug": echo}]}))
        elif mode in ("401", "403", "500"):
            self._send(int(mode), json.dumps({"error": f"rejected credentials {echo}"}))
        elif mode == "closed":
            self._cut_off(echo)
        else:  # pragma: no cover
            raise AssertionError(mode)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        auth = self.headers.get("Authorization") or ""
        self.server.seen_auth.add(auth)
        if self.path.startswith("/llm/"):
            self._completion(body, auth)
        elif self.path.startswith("/judge/"):
            plan = self.server.plan_for(body["messages"][0]["content"])
            self._fail(plan["judge"], auth)
        elif self.path.startswith("/retr/"):
            self._retrieval(body)
        else:  # pragma: no cover
            self._send(404, "{}")

    def _completion(self, body: dict, auth: str) -> None:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):  # the engine then falls back to text prompts (a handled 4xx)
            self._send(400, json.dumps({"error": f"token-id prompts are not supported ({auth})"}))
            return
        plan = self.server.plan_for(prompt)
        if plan["llm"] != "ok":
            self._fail(plan["llm"], auth)
            return
        if prompt.endswith("</information>\n<think>\n"):  # the read turn after a tool result
            text = "Nothing useful there.\n</think>"
        elif "\n</information>" in prompt:
            text = "<answer>James Madison</answer>"
        elif plan["tool"].startswith("access"):
            text = f"<access>https://en.wikipedia.org/wiki/{plan['tool']}</access>"
        else:
            text = f"<search>{plan['tool']}</search>"
        choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        self._send(200, json.dumps({"object": "text_completion", "choices": [choice]}))

    def _retrieval(self, body: dict) -> None:
        mode = (body.get("queries") or body.get("urls") or [""])[0].rsplit("/", 1)[-1]
        echo = f"upstream said token={TOOLS_KEY} key={LLM_KEY}"
        kind = mode.split("-", 1)[-1]
        if kind in ("400", "500"):
            self._send(int(kind), json.dumps({"error": echo}))
        elif kind == "closed":
            self._cut_off(echo)
        else:  # 200 that is not JSON
            self._send(200, f"<html>{echo}</html>", "text/html")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, rows: list[dict]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.rows = [(_norm(r["question"]), p) for r, p in zip(rows, PLAN, strict=True)]
        self.seen_auth: set[str] = set()

    def plan_for(self, prompt: str) -> dict:
        text = _norm(prompt)
        for q, plan in self.rows:
            if q in text:
                return plan
        raise AssertionError(f"no planned question in the prompt: {prompt[-300:]!r}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def echo_server(mirror_dir):
    from asearcher.eval.loaders import load_benchmark

    rows = load_benchmark("Bamboogle", mirror_dir / "ASearcher-test-data", limit=len(PLAN))
    srv = _Server(rows)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, rows
    srv.shutdown()
    srv.server_close()


def _leaks(text: str) -> list[str]:
    found = []
    for key in CANARIES:
        for form in {key, quote(key, safe=""), quote_plus(key)}:
            if form in text:
                found.append(form)
    return found


def test_no_canary_key_in_any_file_or_stderr(tmp_path, echo_server, tiny_model_dir, mirror_dir):
    srv, rows = echo_server
    out = tmp_path / "out"
    env = {
        **os.environ,
        "H10_LLM_CRED": LLM_KEY,  # read by the engine (engine.api_key_env); the name alone says nothing
        "H10_JUDGE_CRED": JUDGE_KEY,  # read by the judge's engine
        "H10_SEARCH_TOKEN": TOOLS_KEY,  # read by nothing: a secret by its name only
        "ASEARCHER_RETRIEVAL_URL": f"{srv.url}/retr",
        "PYTHONUNBUFFERED": "1",
    }
    sets = {
        "results_dir": str(tmp_path),
        "engine.kind": "openai",
        "engine.model": "canary-model",
        "engine.base_url": f"{srv.url}/llm/v1",
        "engine.api_key_env": "H10_LLM_CRED",
        "engine.tokenizer": str(tiny_model_dir),
        "engine.max_retries": "1",
        "eval.k": "1",
        "eval.agent.max_turns": "6",
        "eval.agent.max_new_tokens": "64",
        "eval.judge.enabled": "true",
        "eval.judge.kind": "openai",
        "eval.judge.model": "canary-judge",
        "eval.judge.base_url": f"{srv.url}/judge/v1",
        "eval.judge.api_key_env": "H10_JUDGE_CRED",
        "eval.judge.max_retries": "0",
    }
    argv = [sys.executable, "-m", "asearcher.cli", "eval", "--model", "canary", "--benchmark", "Bamboogle"]
    argv += ["--releases", str(mirror_dir), "--output", str(out), "--max-samples", str(len(PLAN))]
    argv += ["--no-progress", "--log-level", "INFO"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Bearer {LLM_KEY}" in srv.seen_auth and f"Bearer {JUDGE_KEY}" in srv.seen_auth  # keys were sent

    # 1. no canary anywhere: stdout, stderr and every file under the run's directories
    assert not _leaks(proc.stderr), "canary key on stderr"
    assert not _leaks(proc.stdout), "canary key on stdout"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"samples.jsonl", "trajectories.jsonl", "aggregate.json"} <= {p.name for p in written}
    leaking = {str(p.relative_to(tmp_path)): _leaks(p.read_text("utf-8", "replace")) for p in written}
    assert not {p: f for p, f in leaking.items() if f}, "canary key written to files"

    # 2. ...while every error was recorded, with the echoed part replaced by the placeholder
    from asearcher.utils.secrets import PLACEHOLDER

    samples = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
    trajs = {r["id"]: r for r in map(json.loads, (out / "trajectories.jsonl").read_text().splitlines())}
    assert len(samples) == len(PLAN)
    for row, plan in zip(rows, PLAN, strict=True):
        s, t = samples[row["id"]], trajs[row["id"]]
        if plan["llm"] != "ok":
            assert s["status"] == "error" and LLM_ERRORS[plan["llm"]] in s["error"], s
            assert LLM_ERRORS[plan["llm"]] in t["trajectory"]["error"]
            if plan["llm"] in ECHOING:
                assert PLACEHOLDER in s["error"] and PLACEHOLDER in t["trajectory"]["error"], s["error"]
            continue
        assert s["status"] == "ok" and s["prediction"] == "James Madison", s
        failed = [e for e in t["trajectory"]["events"] if e["type"] != "llm" and not e["ok"]]
        assert failed and failed[0]["error"], t["trajectory"]["events"]
        if plan["tool"].endswith(("400", "500")):
            assert PLACEHOLDER in failed[0]["error"], failed[0]["error"]
        judge = s["judge"]
        assert judge["status"] == "error" and CHAT_ERRORS[plan["judge"]] in judge["error"], judge
        if plan["judge"] in ECHOING:
            assert PLACEHOLDER in judge["error"], judge
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["errors"] == 5 and agg["judge_status"]["error"] == 6
    # the logs saw the failures too: engine retries, failed trajectories, failed judge calls
    assert "retrying" in proc.stderr and "judge call failed" in proc.stderr
    assert "trajectory" in proc.stderr and PLACEHOLDER in proc.stderr


@pytest.mark.parametrize("mode", ["nonjson", "nochoices", "401", "500", "closed"])
def test_engine_completion_errors_never_carry_the_key(echo_server, monkeypatch, caplog, mode):
    """The same endpoint in-process: the exception and the log records of every completion error path."""
    srv, rows = echo_server
    question = next(r for r, p in zip(rows, PLAN, strict=True) if p["llm"] == mode)["question"]
    monkeypatch.setenv("H10_LLM_CRED", LLM_KEY)
    caplog.set_level("DEBUG")
    tok = _FakeTok(question)
    engine = OpenAIEngine(
        f"{srv.url}/llm/v1", "m", tokenizer=tok, api_key_env="H10_LLM_CRED", max_retries=1, backoff_s=0.01
    )

    async def go():
        try:
            return await engine.agenerate(GenerationRequest([1, 2], SamplingParams(max_new_tokens=4)))
        finally:
            await engine.aclose()

    with pytest.raises(EndpointError) as exc:
        asyncio.run(go())
    assert LLM_ERRORS[mode] in str(exc.value)
    assert not _leaks(str(exc.value)) and not _leaks(repr(exc.value.args)) and not _leaks(caplog.text)


@pytest.mark.parametrize("mode", ["nonjson", "nochoices", "nomessage", "403", "500", "closed"])
def test_judge_chat_errors_never_carry_the_key(echo_server, monkeypatch, caplog, mode):
    from asearcher.config import JudgeConfig
    from asearcher.eval.judge import make_judge

    srv, rows = echo_server
    row = next(r for r, p in zip(rows, PLAN, strict=True) if p.get("judge") == mode)
    monkeypatch.setenv("H10_JUDGE_CRED", JUDGE_KEY)
    caplog.set_level("DEBUG")
    cfg = JudgeConfig(
        enabled=True, kind="openai", model="j", base_url=f"{srv.url}/judge/v1", api_key_env="H10_JUDGE_CRED",
        max_retries=0,
    )  # fmt: skip
    judge = make_judge(cfg)
    judge._owned_engine.backoff_s = 0.01

    async def go():
        try:
            return await judge.judge(row["question"], row["answers"], "James Madison", seed=1)
        finally:
            await judge.aclose()

    r = asyncio.run(go()).to_dict()
    assert r["status"] == "error" and CHAT_ERRORS[mode] in r["error"], r
    assert not _leaks(json.dumps(r)) and not _leaks(caplog.text)


class _FakeTok:
    """Decodes any ids to a prompt holding the question (so the server picks its mode); encodes to one id."""

    def __init__(self, question: str):
        self.question = question

    def decode(self, ids, skip_special_tokens=False):
        return f"User: {self.question}\nAssistant:"

    def encode(self, text, add_special_tokens=False):
        return [7]
