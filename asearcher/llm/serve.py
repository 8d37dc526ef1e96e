"""Serve a local model over an OpenAI-compatible HTTP API, backed by the batched transformers engine.

Endpoints: GET /v1/models, POST /v1/completions (prompt as a string or a list of token ids), POST
/v1/chat/completions (the model's chat template is applied). Responses carry usage counts, legacy-format
logprobs when asked for, and the output token ids (`token_ids` in each choice, as vLLM's `return_token_ids`).
The stop string is kept in the text (serve-llm's convention) and reported as `stop_reason`. Bad requests get
an OpenAI-style JSON error with a 4xx status.

Example:
  asearcher serve-llm --model results/models/tiny --port 8000
  curl http://127.0.0.1:8000/v1/completions -H 'content-type: application/json' \\
       -d '{"model": "tiny", "prompt": "Hello", "max_tokens": 16}'
"""

# no `from __future__ import annotations`: FastAPI must see the request models (defined in create_app) at runtime

import argparse
import asyncio
import logging
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from asearcher.llm.engine import GenerationRequest, InferenceEngine, SamplingParams

log = logging.getLogger(__name__)


def _error(status: int, message: str, param: str | None = None) -> Any:
    from fastapi.responses import JSONResponse

    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": kind, "param": param, "code": status}},
    )


def create_app(engine: InferenceEngine, served_model_name: str) -> Any:
    """The FastAPI app; `engine` must outlive it (the caller closes it)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel, ConfigDict, Field

    class _Base(BaseModel):
        model_config = ConfigDict(
            extra="ignore"
        )  # clients send many optional OpenAI fields; unknown ones are moot
        model: str | None = None
        max_tokens: int | None = Field(None, ge=1)
        temperature: float = Field(1.0, ge=0)
        top_p: float = Field(1.0, gt=0, le=1)
        top_k: int = -1
        stop: str | list[str] | None = None
        stop_token_ids: list[int] | None = None
        seed: int | None = None
        n: int = 1

    class CompletionBody(_Base):
        prompt: str | list[int]
        logprobs: int | None = Field(None, ge=0)
        echo: bool = False

    class ChatMessage(BaseModel):
        role: str
        content: str

    class ChatBody(_Base):
        messages: list[ChatMessage] = Field(min_length=1)
        max_completion_tokens: int | None = Field(None, ge=1)

    app = FastAPI(title="asearcher serve-llm")
    tok = engine.tokenizer

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> Any:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"invalid request: {where}: {first.get('msg', 'invalid')}", where or None)

    def _check_common(body: _Base) -> Any:
        if body.model is not None and body.model != served_model_name:
            return _error(
                404, f"model {body.model!r} is not served here (available: {served_model_name!r})", "model"
            )
        if body.n != 1:
            return _error(400, "only n=1 is supported", "n")
        if body.echo if isinstance(body, CompletionBody) else False:
            return _error(400, "echo is not supported", "echo")
        return None

    def _sampling(body: _Base, max_tokens: int | None) -> SamplingParams:
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return SamplingParams(
            max_new_tokens=max_tokens or 16,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            stop=stop,
            stop_token_ids=list(body.stop_token_ids or []),
            seed=body.seed,
            greedy=body.temperature == 0,
        )

    async def _generate(ids: list[int], sampling: SamplingParams) -> Any:
        try:
            return await engine.agenerate(GenerationRequest(input_ids=ids, sampling=sampling))
        except ValueError as e:  # prompt too long, bad ids, bad sampling fields
            return _error(400, str(e))

    def _usage(n_prompt: int, n_out: int) -> dict[str, int]:
        return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": served_model_name, "object": "model", "created": 0, "owned_by": "asearcher"}],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": engine.version}

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> Any:
        err = _check_common(body)
        if err is not None:
            return err
        if isinstance(body.prompt, str):
            ids = tok.encode(body.prompt, add_special_tokens=False)
        else:
            ids = list(body.prompt)
        if not ids:
            return _error(400, "prompt is empty", "prompt")
        res = await _generate(ids, _sampling(body, body.max_tokens))
        if not hasattr(res, "output_ids"):
            return res
        logprobs = None
        if body.logprobs is not None:
            tokens = [tok.decode([t]) for t in res.output_ids]
            offsets, pos = [], 0
            for t in tokens:
                offsets.append(pos)
                pos += len(t)
            logprobs = {"tokens": tokens, "token_logprobs": res.output_logprobs, "top_logprobs": None,
                        "text_offset": offsets}  # fmt: skip
        choice = {
            "index": 0,
            "text": res.text,
            "finish_reason": res.finish_reason,
            "stop_reason": res.stop_string,
            "logprobs": logprobs,
            "token_ids": res.output_ids,
            "token_versions": res.output_versions,
        }
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": served_model_name,
            "choices": [choice],
            "usage": _usage(len(ids), len(res.output_ids)),
        }

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> Any:
        err = _check_common(body)
        if err is not None:
            return err
        if not getattr(tok, "chat_template", None):
            return _error(400, f"model {served_model_name!r} has no chat template; use /v1/completions")
        msgs = [m.model_dump() for m in body.messages]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok.encode(text, add_special_tokens=False)
        res = await _generate(ids, _sampling(body, body.max_completion_tokens or body.max_tokens))
        if not hasattr(res, "output_ids"):
            return res
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": res.text},
                    "finish_reason": res.finish_reason,
                    "stop_reason": res.stop_string,
                }
            ],
            "usage": _usage(len(ids), len(res.output_ids)),
        }

    return app


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread on an already-bound socket (port 0 = a free port)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("serve-llm did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Hugging Face model directory (default: engine.model of --config)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0 picks a free one and prints it)"
    )
    p.add_argument(
        "--served-model-name", default=None, help="model name clients send (default: the dir name)"
    )
    p.add_argument("--device", help="cpu | cuda | auto (default: engine.device, auto = cuda when available)")
    p.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="default: engine.dtype"
    )
    p.add_argument(
        "--max-batch-size", type=int, help="most sequences decoded together (default: engine.max_batch_size)"
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from asearcher.errors import UserFacingError
    from asearcher.llm.transformers_engine import TransformersEngine

    from asearcher.config import load_config

    eng = load_config(args.config, args.overrides).engine  # defaults for the options not given
    args.model = args.model or eng.model
    args.device = args.device or eng.device
    args.dtype = args.dtype or eng.dtype
    args.max_batch_size = args.max_batch_size or eng.max_batch_size
    if not Path(args.model).is_dir():
        raise UserFacingError(
            f"--model {args.model}: not a directory (build one with `asearcher tiny-model`)"
        )
    name = args.served_model_name or Path(args.model).resolve().name
    engine = TransformersEngine(
        args.model, device=args.device, dtype=args.dtype, max_batch_size=args.max_batch_size
    )
    app = create_app(engine, name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise UserFacingError(
            f"cannot bind {args.host}:{args.port}: {e.strerror} (pick another --port)"
        ) from None
    port = sock.getsockname()[1]
    print(f"serving {name!r} on http://{args.host}:{port}/v1", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        asyncio.run(engine.aclose())
    return 0
