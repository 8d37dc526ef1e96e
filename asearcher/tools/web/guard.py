"""The URL guard of page access: page URLs come from model output and are untrusted.

`UrlGuard.check(url)` accepts only http(s) URLs whose host resolves to public addresses, and returns the one
address to connect to (a `Target`): the direct reader connects to that IP itself (Host header and TLS server
name set to the URL's host), so a DNS answer that changes between the check and the connection (rebinding)
cannot take it elsewhere. Refused, in every spelling (dotted, decimal / hex / octal integers, short forms like
127.1, IPv6, IPv4-mapped / -compatible / 6to4 / NAT64 / Teredo IPv6 embedding an IPv4 address, `localhost`,
trailing dots): unspecified, loopback, private, link-local (the 169.254.169.254 cloud metadata address
included), shared (100.64/10), multicast, reserved and other non-global addresses. A name that resolves to
several addresses is refused when any of them is.

The one exception is the allowlist of 'host:port' entries (tests, the local web): a URL whose port and host
(the name as written, or its address) match an entry passes whatever the address class. The guard runs on the
first URL and on every redirect hop, so a redirect from an allowlisted server to an address outside the
allowlist is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from asearcher.tools.base import ToolError
from asearcher.utils.secrets import redact

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
# host spellings that C's inet_aton reads as an IPv4 address: 2130706433, 0x7f000001, 0177.0.0.1, 127.1, ...
_IPV4_SPELLING = re.compile(r"^[0-9][0-9a-fA-FxX.]*$")
_HOST_CHARS = re.compile(r"^[a-z0-9_\-.]+$")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")
_METADATA = {ipaddress.IPv4Address("169.254.169.254"), ipaddress.IPv6Address("fd00:ec2::254")}


class URLRefused(ToolError):
    """The guard refused a URL (scheme, address class, or a redirect leaving the allowlist)."""


def _refused(url: str, why: str) -> URLRefused:
    return URLRefused(redact(f"refused URL {url[:300]!r}: {why}"))


def literal_ip(host: str) -> IP | None:
    """The address a host written as an IP literal means (any spelling), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _IPV4_SPELLING.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64, IPv4-compatible, Teredo client)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _IPV4_COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IP) -> str | None:
    """Why an address may not be fetched (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return f"{ip} is a scoped (link-local) IPv6 address"
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = refusal(inner)
            if why is not None:
                return f"{ip} embeds an IPv4 address: {why}"
    if ip in _METADATA:
        return f"{ip} is a link-local cloud metadata address"
    for test, what in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
        ("is_site_local", "site-local"),
    ):
        if getattr(ip, test, False):
            return f"{ip} is a {what} address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return f"{ip} is a shared (carrier-grade NAT) address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def _norm_host(host: str) -> str:
    """Lower case, without trailing dots and IPv6 brackets, IDNA-encoded."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return host


def parse_allow(entries: Iterable[str]) -> set[tuple[str, int]]:
    """'host:port' entries as (normalized host, port) pairs (the IPv6 form is '[::1]:8000')."""
    out = set()
    for e in entries:
        host, _, port = e.strip().rpartition(":")
        out.add((_norm_host(host), int(port)))
    return out


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str  # normalized name or literal
    port: int
    ip: str  # the validated address
    path: str  # path and query, as written ('/' when empty)
    allowed_by: str | None = None  # the allowlist entry that let a non-public address through

    @property
    def host_header(self) -> str:
        lit = literal_ip(self.host)
        shown = f"[{lit}]" if isinstance(lit, ipaddress.IPv6Address) else self.host
        return shown if _DEFAULT_PORTS[self.scheme] == self.port else f"{shown}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with the validated IP in place of the host (send with Host: host_header)."""
        ip = ipaddress.ip_address(self.ip)
        shown = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{self.scheme}://{shown}:{self.port}{self.path}"

    @property
    def server_name(self) -> str | None:
        """The TLS server name (SNI and certificate check): the host when it is a name."""
        return None if literal_ip(self.host) is not None else self.host


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ToolError(redact(f"cannot resolve host {host!r}: {e}")) from None
    addrs = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addrs:
            addrs.append(sockaddr[0])
    return addrs


class UrlGuard:
    """Checks page URLs; `allow`: 'host:port' entries let through whatever their address class."""

    def __init__(self, allow: Iterable[str] = (), resolver=None):
        self.allow = parse_allow(allow)
        self._allow_ips = {(ip, p) for h, p in self.allow if (ip := literal_ip(h)) is not None}
        self._resolve = resolver or _resolve

    def _allowed(self, host: str, port: int, ips: list[IP]) -> tuple[str, list[IP]] | None:
        """The allowlist entry matching host:port, and the addresses it allows (None: no entry matches)."""
        if (host, port) in self.allow:
            return f"{host}:{port}", ips
        for ip in ips:
            if (ip, port) in self._allow_ips:
                return f"{ip}:{port}", [ip]
        return None

    def parse(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, path) of an http(s) URL, or URLRefused; no name resolution."""
        if not isinstance(url, str) or not url:
            raise _refused(str(url), "not a URL")
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
            raise _refused(url, "the URL contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise _refused(url, f"malformed URL ({e})") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise _refused(url, f"only http and https URLs are fetched (got scheme {scheme or 'none'!r})")
        host = _norm_host(parts.hostname or "")
        if not host:
            raise _refused(url, "no host")
        if literal_ip(host) is None and not _HOST_CHARS.match(host):
            raise _refused(url, f"invalid host name {host!r}")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return scheme, host, port or _DEFAULT_PORTS[scheme], path

    async def check(self, url: str) -> Target:
        """The checked target of url (resolving its host), or URLRefused / ToolError (no such host)."""
        scheme, host, port, path = self.parse(url)
        lit = literal_ip(host)
        if lit is not None:
            ips: list[IP] = [lit]
        elif host == "localhost" or host.endswith(".localhost"):
            if (host, port) not in self.allow:
                raise _refused(url, f"{host!r} is a loopback name")
            ips = [ipaddress.ip_address(a) for a in await self._resolve(host, port)]
        else:
            ips = [ipaddress.ip_address(a) for a in await self._resolve(host, port)]
        if not ips:
            raise ToolError(redact(f"cannot resolve host {host!r}: no address"))
        allowed = self._allowed(host, port, ips)
        entry = None
        if allowed is not None:
            entry, ips = allowed
        else:
            for ip in ips:
                why = refusal(ip)
                if why is not None:
                    shown = host if lit is not None and str(lit) == host else f"{host} -> {ip}"
                    raise _refused(url, f"{why} ({shown}; not in tools.web.allow)")
        ips.sort(key=lambda a: a.version)  # IPv4 first: local servers often listen on IPv4 only
        return Target(url, scheme, host, port, str(ips[0]), path, entry)
