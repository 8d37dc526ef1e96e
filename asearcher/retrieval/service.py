"""Run a command with a retrieval server started around it (for Snakemake rules and scripts).

  asearcher with-retrieval --index DIR --corpus F --pages F [--addr-dir D] -- CMD ARGS...

Starts `asearcher serve-retrieval` on a free port, waits until /health answers, runs CMD with
ASEARCHER_RETRIEVAL_URL=http://ip:port and RAG_SERVER_ADDR_DIR set, then stops the server (also when CMD fails
or on Ctrl-C / SIGTERM) and exits with CMD's exit code. `running_server(...)` is the same as a context manager.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from asearcher.config import RetrievalConfig
from asearcher.errors import UserFacingError

from .address import ADDR_DIR_ENV, URL_ENV
from .client import RetrievalClient

log = logging.getLogger(__name__)


class ServerStartError(UserFacingError, RuntimeError):
    """The retrieval server exited or did not answer in time; the message holds its log tail."""


@dataclass
class RunningServer:
    url: str
    ip: str
    port: int
    addr_dir: Path
    process: subprocess.Popen
    log_path: Path

    def client(self, **kw) -> RetrievalClient:
        return RetrievalClient(self.url, **kw)

    def env(self) -> dict[str, str]:
        """Variables that point a child process at this server."""
        return {URL_ENV: self.url, ADDR_DIR_ENV: str(self.addr_dir)}


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM (graceful: the server removes its address file), then SIGKILL after grace_s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running_server(
    index: str | Path,
    corpus: str | Path | None = None,
    pages: str | Path | None = None,
    *,
    addr_dir: str | Path | None = None,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    retrieval: RetrievalConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout_s: float = 300.0,
    log_path: str | Path | None = None,
) -> Iterator[RunningServer]:
    """Start `asearcher serve-retrieval` in a subprocess; yield once it answers /health; always stop it."""
    with tempfile.TemporaryDirectory(prefix="asearcher-retrieval-") as tmp:
        tmpdir = Path(tmp)
        addr = Path(addr_dir) if addr_dir else tmpdir / "addr"
        ready = tmpdir / "ready"
        logp = Path(log_path) if log_path else tmpdir / "server.log"
        cmd = [
            sys.executable,
            "-m",
            "asearcher.cli",
            "serve-retrieval",
            "--index",
            str(index),
            "--host",
            host,
        ]
        cmd += ["--port", str(port), "--addr-dir", str(addr), "--ready-file", str(ready)]
        if corpus:
            cmd += ["--corpus", str(corpus)]
        if pages:
            cmd += ["--pages", str(pages)]
        if retrieval is not None:
            cfg_path = tmpdir / "config.yaml"
            cfg_path.write_text(yaml.safe_dump({"retrieval": retrieval.model_dump(mode="json")}))
            cmd += ["--config", str(cfg_path)]
        elif config:
            cmd += ["--config", str(config)]
        for o in overrides or []:
            cmd += ["--set", o]
        with open(logp, "ab") as logf:
            # Own session: a Ctrl-C in the terminal reaches the command, and we stop the server ourselves.
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            server = _wait_ready(proc, ready, addr, logp, startup_timeout_s)
            yield server
        finally:
            stop_process(proc)


def _wait_ready(
    proc: subprocess.Popen, ready: Path, addr: Path, logp: Path, timeout_s: float
) -> RunningServer:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"retrieval server exited with code {proc.returncode}; its log ({logp}):\n{_tail(logp)}"
            )
        if ready.exists() and ready.read_text().strip():
            ip, port = ready.read_text().strip().rsplit(":", 1)
            url = f"http://{ip}:{port}"
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    return RunningServer(url, ip, int(port), addr, proc, logp)
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    stop_process(proc)
    raise ServerStartError(
        f"retrieval server did not answer within {timeout_s:.0f}s; its log ({logp}):\n{_tail(logp)}"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory built by `asearcher index`")
    p.add_argument("--corpus", help="wiki_corpus.jsonl (required for a dense index)")
    p.add_argument("--pages", help="wiki_webpages.jsonl for /access")
    p.add_argument(
        "--addr-dir", help=f"address-file directory exported as ${ADDR_DIR_ENV} (default: a temp dir)"
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument(
        "--startup-timeout", type=float, default=600.0, help="seconds to wait for the server (default: 600)"
    )
    p.add_argument("--server-log", help="append the server's output to this file (default: a temp file)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...: the command to run")


def run(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UserFacingError(
            "no command given: use `asearcher with-retrieval --index DIR ... -- COMMAND ARGS...`"
        )

    def on_term(signum, frame):  # turn SIGTERM into an exception so the finally blocks stop both processes
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, on_term)
    child: subprocess.Popen | None = None
    try:
        with running_server(
            args.index, args.corpus, args.pages, addr_dir=args.addr_dir, config=args.config, overrides=args.overrides,
            host=args.host,
            startup_timeout_s=args.startup_timeout, log_path=args.server_log,
        ) as server:  # fmt: skip
            env = {**os.environ, **server.env()}
            try:
                child = subprocess.Popen(cmd, env=env)
            except FileNotFoundError:
                raise UserFacingError(f"command not found: {cmd[0]}") from None
            try:
                return child.wait()
            except KeyboardInterrupt:
                # The terminal's Ctrl-C also reached the child; give it a moment to exit on its own.
                try:
                    return child.wait(10)
                except subprocess.TimeoutExpired:
                    stop_process(child, 5)
                    return 130
    finally:
        if child is not None and child.poll() is None:
            stop_process(child, 5)
        signal.signal(signal.SIGTERM, old)
