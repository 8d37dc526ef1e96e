"""The upstream address-file convention: a server writes `<dir>/Host{ip}_IP{port}.txt` containing `ip:port`;
clients glob `Host*_IP*.txt` in $RAG_SERVER_ADDR_DIR to find servers."""

from __future__ import annotations

import socket
from pathlib import Path

from asearcher.utils.atomic import atomic_write_text

ADDR_DIR_ENV = "RAG_SERVER_ADDR_DIR"
URL_ENV = "ASEARCHER_RETRIEVAL_URL"


def advertised_ip(host: str) -> str:
    """The address clients should dial: the bind address, or this host's IP when bound to all interfaces."""
    if host in ("0.0.0.0", "::", ""):
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    return host


def address_file(addr_dir: str | Path, ip: str, port: int) -> Path:
    return Path(addr_dir) / f"Host{ip}_IP{port}.txt"


def write_address(addr_dir: str | Path, ip: str, port: int) -> Path:
    path = address_file(addr_dir, ip, port)
    # a globbing client never sees a half-written file (the temp name does not match Host*_IP*.txt)
    atomic_write_text(path, f"{ip}:{port}")
    return path


def remove_address(path: str | Path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def read_addresses(addr_dir: str | Path) -> list[str]:
    """`http://ip:port` of every server that advertised itself in `addr_dir` (sorted, deduplicated)."""
    out = set()
    for p in sorted(Path(addr_dir).glob("Host*_IP*.txt")):
        try:
            text = p.read_text().strip()
        except OSError:
            continue
        if text:
            out.add(text if "://" in text else f"http://{text}")
    return sorted(out)
