"""serve-llm (OpenAI-compatible HTTP on 127.0.0.1) and OpenAIEngine end to end; retries; secrets never logged."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from asearcher.llm.engine import GenerationRequest, SamplingParams
from asearcher.llm.openai_engine import EndpointError, OpenAIEngine
from asearcher.llm.serve import BackgroundServer, create_app

NAME = "tiny-test"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def server(tiny_engine):
    srv = BackgroundServer(create_app(tiny_engine, NAME)).start()
    yield srv
    srv.stop()


def client_engine(url, tok=None, **kw):
    return OpenAIEngine(url, NAME, tokenizer=tok, max_retries=0, **kw)


async def _with(engine, coro_fn):
    try:
        return await coro_fn(engine)
    finally:
        await engine.aclose()


def test_completions_end_to_end_equal_the_local_engine(server, tiny_engine):
    tok = tiny_engine.tokenizer
    prompt = tok.encode("The City Bank of New York", add_special_tokens=False)
    req = GenerationRequest(prompt, SamplingParams(max_new_tokens=12, temperature=0.8, seed=5))
    local = run(tiny_engine.agenerate(req))
    remote = run(_with(client_engine(server.url, tok), lambda e: e.agenerate(req)))
    assert remote.output_ids == local.output_ids and not remote.retokenized
    assert remote.text == local.text and remote.finish_reason == local.finish_reason == "length"
    assert torch.allclose(
        torch.tensor(remote.output_logprobs), torch.tensor(local.output_logprobs), atol=1e-5
    )

    # a stop string travels through the API and comes back kept at the end of the text
    stop = tok.decode([local.output_ids[2]]).strip() or tok.decode([local.output_ids[2]])
    req = GenerationRequest(prompt, SamplingParams(max_new_tokens=12, temperature=0.8, seed=5, stop=[stop]))
    local = run(tiny_engine.agenerate(req))
    remote = run(_with(client_engine(server.url, tok), lambda e: e.agenerate(req)))
    assert remote.finish_reason == "stop" and remote.stop_string == stop and remote.text.endswith(stop)
    assert remote.output_ids == local.output_ids


def test_chat_end_to_end_and_raw_http(server, tiny_engine):
    msgs = [{"role": "user", "content": "Who founded Citibank?"}]
    s = SamplingParams(max_new_tokens=8, greedy=True)
    text = run(_with(client_engine(server.url, api="chat"), lambda e: e.achat(msgs, s)))
    tok = tiny_engine.tokenizer
    ids = tok.encode(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)  # fmt: skip
    assert text == run(tiny_engine.agenerate(GenerationRequest(ids, s))).text

    with httpx.Client(base_url=server.url) as c:
        assert c.get("/models").json()["data"][0]["id"] == NAME
        r = c.post("/completions", json={"model": NAME, "prompt": "Hello", "max_tokens": 5, "temperature": 0,
                                          "logprobs": 1})  # fmt: skip
        assert r.status_code == 200
        body = r.json()
        n_prompt = len(tok.encode("Hello", add_special_tokens=False))
        assert body["usage"] == {
            "prompt_tokens": n_prompt,
            "completion_tokens": 5,
            "total_tokens": n_prompt + 5,
        }
        assert len(body["choices"][0]["logprobs"]["token_logprobs"]) == 5
        r = c.post("/chat/completions", json={"model": NAME, "messages": msgs, "max_tokens": 4})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 4


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/completions", {"model": NAME, "max_tokens": 4}, 400, "prompt"),
        ("/completions", {"model": NAME, "prompt": "x", "n": 2}, 400, "n=1"),
        ("/completions", {"model": "other", "prompt": "x"}, 404, "not served"),
        ("/completions", {"model": NAME, "prompt": [10**8]}, 400, "vocabulary"),
        ("/completions", {"model": NAME, "prompt": "x", "temperature": -1}, 400, "temperature"),
        ("/completions", {"model": NAME, "prompt": [], "max_tokens": 3}, 400, "empty"),
        ("/chat/completions", {"model": NAME, "messages": []}, 400, "messages"),
    ],
)
def test_bad_requests_get_4xx_json_errors(server, path, body, status, needle):
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


def test_openai_engine_raises_on_4xx_without_retry_and_cannot_update(server):
    engine = OpenAIEngine(server.url, "wrong-model", max_retries=3, backoff_s=0.01)
    with pytest.raises(EndpointError, match="404"):
        run(_with(engine, lambda e: e.agenerate(GenerationRequest([1, 2], SamplingParams(max_new_tokens=2)))))
    with pytest.raises(NotImplementedError):
        run(OpenAIEngine(server.url, NAME).update_weights({}, 1))
    with pytest.raises(NotImplementedError, match="completions"):
        run(OpenAIEngine(server.url, NAME, api="chat").agenerate(GenerationRequest([1], SamplingParams())))


# ---- a test double endpoint: flaky, echoing, text-only ------------------------------------------------------------
def double_app(state):
    app = FastAPI()

    @app.post("/v1/completions")
    async def completions(req: Request):
        body = await req.json()
        state["calls"] += 1
        state["auth"] = req.headers.get("authorization")
        if state["mode"] == "flaky" and state["calls"] <= 2:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if state["mode"] == "echo-500":  # a careless server that echoes the credentials back
            return JSONResponse({"error": {"message": f"bad auth {state['auth']}"}}, status_code=500)
        if state["mode"] == "text-only" and not isinstance(body["prompt"], str):
            return JSONResponse({"error": {"message": "prompt must be a string"}}, status_code=400)
        state["prompts"].append(body["prompt"])
        return {"choices": [{"text": " hello world", "finish_reason": "length", "logprobs": None}]}

    return app


@pytest.fixture()
def double():
    state = {"calls": 0, "mode": "ok", "auth": None, "prompts": []}
    srv = BackgroundServer(double_app(state)).start()
    yield srv, state
    srv.stop()


def test_retries_transient_errors_then_succeeds(double, tiny_engine):
    srv, state = double
    state["mode"] = "flaky"
    engine = OpenAIEngine(srv.url, "m", tokenizer=tiny_engine.tokenizer, max_retries=3, backoff_s=0.01)
    res = run(
        _with(engine, lambda e: e.agenerate(GenerationRequest([5, 6], SamplingParams(max_new_tokens=3))))
    )
    assert state["calls"] == 3 and res.text == " hello world"
    # no token ids from this server: recovered by re-tokenizing, and flagged
    assert res.retokenized and res.output_ids == tiny_engine.tokenizer.encode(
        " hello world", add_special_tokens=False
    )


def test_falls_back_to_text_prompts_when_ids_are_rejected(double, tiny_engine):
    srv, state = double
    state["mode"] = "text-only"
    tok = tiny_engine.tokenizer
    ids = tok.encode("Citibank <search>", add_special_tokens=False)
    engine = OpenAIEngine(srv.url, "m", tokenizer=tok, max_retries=0)

    async def twice(e):
        await e.agenerate(GenerationRequest(ids, SamplingParams(max_new_tokens=3)))
        return await e.agenerate(GenerationRequest(ids, SamplingParams(max_new_tokens=3)))

    run(_with(engine, twice))
    assert state["prompts"] == ["Citibank <search>"] * 2 and state["calls"] == 3  # one rejection, then text


def test_api_key_is_sent_but_never_logged(double, monkeypatch, caplog):
    srv, state = double
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    state["mode"] = "echo-500"
    caplog.set_level(logging.DEBUG)
    engine = OpenAIEngine(srv.url, "m", api_key_env="MY_LLM_KEY", max_retries=2, backoff_s=0.01)
    with pytest.raises(EndpointError) as exc:
        run(_with(engine, lambda e: e.agenerate(GenerationRequest([1], SamplingParams(max_new_tokens=2)))))
    assert state["auth"] == f"Bearer {secret}" and state["calls"] == 3
    assert secret not in str(exc.value) and secret not in repr(engine)
    assert "retrying" in caplog.text and secret not in caplog.text


def test_serve_llm_cli_rejects_missing_model(tmp_path, capsys):
    from asearcher.cli import main

    assert main(["serve-llm", "--model", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
