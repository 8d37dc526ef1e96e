"""The URL guard over a table of URLs: every refused address class in every spelling, and the allowlist."""

from __future__ import annotations

import asyncio

import pytest

from asearcher.tools.base import ToolError
from asearcher.tools.web import URLRefused, UrlGuard

NAMES = {
    "public.test": ["93.184.216.34"],
    "v6.public.test": ["2606:2800:220:1:248:1893:25c8:1946"],
    "internal.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "127.0.0.1"],  # one bad address spoils the name
    "mapped.test": ["::ffff:192.168.0.1"],
    "localhost": ["127.0.0.1"],
    "pages.test": ["127.0.0.1"],
}


async def resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise ToolError(f"cannot resolve host {host!r}")
    return NAMES[host]


def check(url: str, allow=()):
    return asyncio.run(UrlGuard(allow, resolver=resolver).check(url))


REFUSED = [
    # loopback in every spelling
    "http://127.0.0.1/", "http://127.1/", "http://127.0.0.1./", "http://2130706433/", "http://0x7f000001/",
    "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://017700000001/", "http://127.000.000.001/",
    "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/", "http://[::127.0.0.1]/", "http://[2002:7f00:1::]/",
    "http://[64:ff9b::7f00:1]/", "http://localhost/", "http://LOCALHOST./", "http://localhost:8080/x",
    "http://foo.localhost/", "https://user:pw@127.0.0.1/", "http://public.test@127.0.0.1/",
    # unspecified
    "http://0.0.0.0/", "http://0/", "http://[::]/",
    # private and shared
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://0xc0a80101/", "http://100.64.0.1/",
    "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:a00:1]/",
    # link-local and the cloud metadata endpoint
    "http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/",
    # multicast, reserved, broadcast, documentation, benchmarking
    "http://224.0.0.1/", "http://239.255.255.250/", "http://[ff02::1]/", "http://240.0.0.1/",
    "http://255.255.255.255/", "http://192.0.2.1/", "http://198.18.0.1/", "http://[2001:db8::1]/",
    # names that resolve to refused addresses
    "http://internal.test/", "http://metadata.test/", "http://mixed.test/", "http://mapped.test/",
    # not http(s), not a URL
    "file:///etc/passwd", "ftp://public.test/", "gopher://public.test/", "javascript:alert(1)",
    "data:text/html,hi", "//public.test/x", "public.test", "", "http:///nohost", "http://public.test:99999/",
    "http://exa mple.test/", "http://public.test/\nx", "http://bad_host!.test/",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_refused(url):
    with pytest.raises(URLRefused) as e:
        check(url)
    assert "refused URL" in str(e.value)


def test_unknown_name_is_a_tool_error_not_a_crash():
    with pytest.raises(ToolError, match="cannot resolve"):
        check("http://no-such-host.test/")


@pytest.mark.parametrize(
    "url, ip, host_header, pinned",
    [
        ("http://public.test/x", "93.184.216.34", "public.test", "http://93.184.216.34:80/x"),
        (
            "https://PUBLIC.test./a?q=1#frag",
            "93.184.216.34",
            "public.test",
            "https://93.184.216.34:443/a?q=1",
        ),
        ("http://public.test:8080", "93.184.216.34", "public.test:8080", "http://93.184.216.34:8080/"),
        ("http://93.184.216.34/", "93.184.216.34", "93.184.216.34", "http://93.184.216.34:80/"),
        ("http://1572395042/", "93.184.216.34", "1572395042", "http://93.184.216.34:80/"),
        (
            "http://v6.public.test/",
            "2606:2800:220:1:248:1893:25c8:1946",
            "v6.public.test",
            "http://[2606:2800:220:1:248:1893:25c8:1946]:80/",
        ),
        ("http://[2606:4700::1111]/", "2606:4700::1111", "[2606:4700::1111]", "http://[2606:4700::1111]:80/"),
    ],
)
def test_public_addresses_pass_and_pin_the_checked_ip(url, ip, host_header, pinned):
    t = check(url)
    assert (t.ip, t.host_header, t.pinned_url) == (ip, host_header, pinned)
    assert t.allowed_by is None
    assert t.server_name == (None if t.host[0].isdigit() or ":" in t.host else t.host)


def test_allowlist_is_host_and_port_exactly():
    allow = ["127.0.0.1:8080", "pages.test:9000"]
    assert check("http://127.0.0.1:8080/x", allow).allowed_by == "127.0.0.1:8080"
    assert check("http://2130706433:8080/x", allow).ip == "127.0.0.1"  # the same address, another spelling
    t = check("http://pages.test:9000/wiki/A", allow)
    assert (t.ip, t.host_header, t.allowed_by) == ("127.0.0.1", "pages.test:9000", "pages.test:9000")
    for url in [
        "http://127.0.0.1:8081/",  # another port
        "http://127.0.0.1/",  # default port
        "https://127.0.0.1:8081/",
        "http://[::ffff:127.0.0.1]:8080/",  # an IPv6 address is not the allowlisted IPv4 one
        "http://localhost:8080/",  # a loopback name needs its own entry
        "http://pages.test:9001/",
        "http://10.0.0.1:8080/",
    ]:
        with pytest.raises(URLRefused):
            check(url, allow)
