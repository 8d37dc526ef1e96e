"""The judge through real engines: OpenAIEngine over real HTTP (a scripted chat endpoint on 127.0.0.1) and the
tiny TransformersEngine (chat template + token generation)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI, Request

from asearcher.config import JudgeConfig
from asearcher.eval.judge import make_judge


@pytest.fixture
def chat_endpoint():
    """A scripted OpenAI-compatible /v1/chat/completions on 127.0.0.1; replies in order, records requests."""
    replies = [
        "Let me think about the names.",
        'Verdict:\n```json\n{"rationale": "same", "judgement": "Correct"}\n```',
    ]
    seen: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        content = replies[min(len(seen) - 1, len(replies) - 1)]
        return {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ]
        }

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("chat endpoint did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", seen
    server.should_exit = True
    thread.join(10)


def test_openai_judge_over_http(chat_endpoint, monkeypatch):
    url, seen = chat_endpoint
    monkeypatch.setenv("H5_JUDGE_KEY", "sk-test-secret")
    cfg = JudgeConfig(
        enabled=True,
        kind="openai",
        model="judge-model",
        base_url=url,
        api_key_env="H5_JUDGE_KEY",
        max_retries=2,
        temperature=0.6,
        top_p=0.95,
        max_new_tokens=64,
    )
    judge = make_judge(cfg)

    async def go():
        try:
            return await judge.judge(
                "Who wrote Hamlet?", ["William Shakespeare"], "Shakespeare</answer>", seed=5
            )
        finally:
            await judge.aclose()

    r = asyncio.run(go())
    assert (r.score, r.judgement, r.status, r.attempts, r.parser) == (1.0, "Correct", "ok", 2, "json_block")
    assert len(seen) == 2
    body = seen[0]["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0.6 and body["top_p"] == 0.95
    assert body["seed"] == 5 and seen[1]["body"]["seed"] == 6  # a retry uses a new seed
    content = body["messages"][0]["content"]
    assert "Who wrote Hamlet?" in content and "William Shakespeare" in content and "</answer>" not in content
    assert seen[0]["auth"] == "Bearer sk-test-secret"
    assert "sk-test-secret" not in repr(r.to_dict())
    d = judge.describe()
    assert d["model"] == "judge-model" and d["max_retries"] == 2 and len(d["prompt_sha256"]) == 64


def test_tiny_transformers_judge_is_bounded(tiny_model_dir):
    """A random-weight model never produces a verdict: the judge gives up after max_retries, scoring 0."""
    cfg = JudgeConfig(
        enabled=True, kind="transformers", model=str(tiny_model_dir), max_retries=1, max_new_tokens=8
    )
    judge = make_judge(cfg)

    async def go():
        try:
            return await judge.judge("Who wrote Hamlet?", ["William Shakespeare"], "Shakespeare", seed=1)
        finally:
            await judge.aclose()

    r = asyncio.run(go())
    assert r.status in ("ok", "unparsed")  # "ok" only if random tokens happened to spell a verdict
    if r.status == "unparsed":
        assert (r.score, r.attempts, r.judgement) == (0.0, 2, None)
    assert r.attempts <= 2
