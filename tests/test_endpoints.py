"""The SSRF guard: URL policy, address spellings, and the connect-time resolver check."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st

from push_service.endpoints import (
    VERDICT_CACHE_SIZE,
    EndpointPolicy,
    PolicyResolver,
    is_public,
    parse_ip_literal,
)
from push_service.errors import EndpointNotAllowed
from tests.support import stub_server

ANY = EndpointPolicy(("*",))
ANY_HTTP = EndpointPolicy(("*",), allow_http=True)
DEFAULT = EndpointPolicy(
    (
        "fcm.googleapis.com",
        "*.push.services.mozilla.com",
        "*.push.apple.com",
        "*.notify.windows.com",
    )
)

HOSTILE = [
    # cloud metadata
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/",
    # loopback in every spelling
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/push",
    "https://127.1/",
    "https://127.0.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0x7f.0x0.0x0.0x1/",
    "https://0177.0.0.1/",
    "https://017700000001/",
    "https://127.0.0.1./",
    "https://[::1]/",
    "https://[0:0:0:0:0:0:0:1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::127.0.0.1]/",  # IPv4-compatible
    "https://[64:ff9b::127.0.0.1]/",  # NAT64
    "https://[2002:7f00:1::1]/",  # 6to4
    "https://0.0.0.0/",
    "https://0/",
    "https://[::]/",
    "https://localhost/",
    "https://LOCALHOST/",
    "https://localhost./",
    "https://foo.localhost/",
    # non-ASCII spellings that IDNA folds into loopback after the check
    "https://１２７.０.０.１/",
    "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
    "https://127%2e0%2e0%2e1/",
    "https://127.0.0.1\\.push.services.mozilla.com/",
    # private, shared, link-local, unique local, multicast, reserved
    "https://10.0.0.1/",
    "https://10.255.255.255/",
    "https://172.16.0.1/",
    "https://172.31.255.254/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://169.254.1.1/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fd00::1]/",
    "https://[fc00::1]/",
    "https://224.0.0.1/",
    "https://[ff02::1]/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    "https://[2001:db8::1]/",
    # user information
    "https://user@fcm.googleapis.com/",
    "https://user:pass@fcm.googleapis.com/",
    "https://fcm.googleapis.com@evil.example/",
    # schemes
    "javascript:alert(1)",
    "file:///etc/passwd",
    "ftp://fcm.googleapis.com/",
    "data:text/plain,hi",
    "ws://fcm.googleapis.com/",
    "gopher://fcm.googleapis.com/",
    "http://fcm.googleapis.com/",  # PUSH_ALLOW_HTTP is false
    # malformed
    "https:///path",
    "https://:443/",
    "https://fcm.googleapis.com:99999/",
    "https://1.2.3.4.5/",
    "https://a\x00.1/",
    "https://é.1/",
    "https://exa mple.com/",
    "https://" + "a" * 2100 + ".com/",
    "",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_endpoints_are_refused_even_with_wildcard(url: str) -> None:
    with pytest.raises(EndpointNotAllowed):
        ANY.check(url)


@pytest.mark.parametrize(
    "url",
    [u for u in HOSTILE if u.startswith("https://") and "@" not in u] + ["http://127.0.0.1/"],
)
def test_hostile_endpoints_are_refused_with_http_allowed(url: str) -> None:
    with pytest.raises(EndpointNotAllowed):
        ANY_HTTP.check(url)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc:def", "https://fcm.googleapis.com"),
        ("https://FCM.googleapis.com:443/wp/abc", "https://fcm.googleapis.com"),
        (
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
            "https://updates.push.services.mozilla.com",
        ),
        ("https://web.push.apple.com/QGx0", "https://web.push.apple.com"),
        (
            "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA%2b",
            "https://wns2-par02p.notify.windows.com",
        ),
    ],
)
def test_default_allowlist_admits_the_public_push_services(url: str, origin: str) -> None:
    checked = DEFAULT.check(url)
    assert checked.origin == origin
    assert checked.url == url
    assert ANY.check(url).origin == origin


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/",
        "https://push.services.mozilla.com.evil.example/",
        "https://evilpush.services.mozilla.com/",  # suffix must match at a label boundary
        "https://fcm.googleapis.com.evil.example/",
        "https://8.8.8.8/",  # a public address is not a listed host
    ],
)
def test_default_allowlist_refuses_other_hosts(url: str) -> None:
    with pytest.raises(EndpointNotAllowed):
        DEFAULT.check(url)


def test_wildcard_admits_public_ip_literals_with_origin() -> None:
    assert ANY.check("https://8.8.8.8/push").origin == "https://8.8.8.8"
    assert ANY.check("https://[2606:4700::1111]:8443/p").origin == "https://[2606:4700::1111]:8443"
    assert ANY.check("https://[::ffff:8.8.8.8]/").host == "::ffff:8.8.8.8"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "foo.localhost", "10.1.2.3"])
def test_exactly_listed_private_host_is_allowed(host: str) -> None:
    policy = EndpointPolicy((host,), allow_http=True)
    checked = policy.check(f"http://{host}:8080/push")
    assert checked.origin == f"http://{host}:8080"
    assert policy.check(f"https://{host}/push").origin == f"https://{host}"


def test_exact_listing_admits_only_that_spelling() -> None:
    policy = EndpointPolicy(("127.0.0.1",), allow_http=True)
    for other in ("127.1", "2130706433", "localhost", "[::1]", "127.0.0.2"):
        with pytest.raises(EndpointNotAllowed):
            policy.check(f"http://{other}/")


@pytest.mark.parametrize(
    "allowlist",
    [("*",), ("*.localhost",), ("*.0.0.1",), ("*.1",), ("*.internal", "*")],
)
def test_wildcard_never_admits_loopback(allowlist: tuple[str, ...]) -> None:
    policy = EndpointPolicy(allowlist, allow_http=True)
    for url in ("http://localhost/", "http://foo.localhost/", "http://127.0.0.1/"):
        with pytest.raises(EndpointNotAllowed):
            policy.check(url)


def test_empty_allowlist_refuses_everything() -> None:
    with pytest.raises(EndpointNotAllowed, match="PUSH_ENDPOINT_ALLOWLIST"):
        EndpointPolicy(()).check("https://fcm.googleapis.com/x")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("::1", "::1"),
        ("fcm.googleapis.com", None),
        ("1.example", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    address = parse_ip_literal(host)
    assert (str(address) if address else None) == expected


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("2002:808:808::1", True),
        ("64:ff9b::8.8.8.8", True),
        ("127.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("::127.0.0.1", False),
        ("::ffff:0:127.0.0.1", False),
        ("64:ff9b::10.0.0.1", False),
        ("64:ff9b:1::8.8.8.8", False),
        ("2002:a00:1::", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("224.0.0.1", False),
        ("ff0e::1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


# --- properties ---------------------------------------------------------------------------

host_text = st.text(max_size=24) | st.from_regex(r"[0-9a-fx.]{1,20}", fullmatch=True)
urls = st.one_of(
    st.text(max_size=80),
    host_text.map(lambda h: f"https://{h}/push"),
    host_text.map(lambda h: f"https://{h}.1/"),
    host_text.map(lambda h: f"https://[{h}]/"),
    st.tuples(host_text, st.integers(-5, 70000)).map(lambda t: f"http://{t[0]}:{t[1]}/"),
)


@settings(max_examples=300, deadline=None)
@given(urls)
def test_check_returns_an_endpoint_or_refuses(url: str) -> None:
    """Never another exception; what it admits, aiohttp dials as the same host."""
    try:
        endpoint = ANY_HTTP.check(url)
    except EndpointNotAllowed:
        return
    literal = parse_ip_literal(endpoint.host)
    assert literal is None or is_public(literal)
    assert endpoint.origin.startswith(("https://", "http://"))
    # The host aiohttp will connect to is the host that was checked (no IDNA surprises).
    assert (yarl.URL(url).host or "").rstrip(".") == endpoint.host


# --- the per-origin verdict cache -------------------------------------------------------


def verdict(policy: EndpointPolicy, url: str) -> tuple[str, str, str] | str:
    try:
        endpoint = policy.check(url)
    except EndpointNotAllowed as exc:
        return exc.detail
    return (endpoint.url, endpoint.host, endpoint.origin)


def uncached(policy: EndpointPolicy, url: str) -> tuple[str, str, str] | str:
    fresh = EndpointPolicy(tuple(policy.exact) + tuple("*" + s for s in policy.suffixes))
    fresh.schemes, fresh.any_public = policy.schemes, policy.any_public
    try:
        endpoint = fresh._check_url(url)
    except EndpointNotAllowed as exc:
        return exc.detail
    return (endpoint.url, endpoint.host, endpoint.origin)


tails = st.sampled_from(["", "/", "/push/a", "?x=1", "#f", "/a?b#c", "/\t/x", "//x"])
cache_urls = st.one_of(
    urls,
    st.tuples(urls, tails).map("".join),
    st.tuples(st.sampled_from(["https://", "http://", "https:/\t/", "HTTPS://", " https://"]),
              host_text | st.sampled_from(["fcm.googleapis.com", "u@fcm.googleapis.com",
                                           "fcm.googleapis.com:444", "fcm.goo\tgleapis.com"]),
              tails).map("".join),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(cache_urls, min_size=1, max_size=6))
def test_cached_verdicts_equal_the_full_check(batch: list[str]) -> None:
    """Whatever was cached from earlier URLs, each verdict is the one a full check gives."""
    for policy in (DEFAULT, ANY_HTTP):
        for url in batch:
            assert verdict(policy, url) == uncached(policy, url), url


def test_verdicts_are_cached_per_origin_and_the_cache_is_bounded() -> None:
    policy = EndpointPolicy(("fcm.googleapis.com",))
    for i in range(3):
        assert policy.check(f"https://fcm.googleapis.com/fcm/send/{i}").url.endswith(str(i))
    info = policy._verdict.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    for i in range(VERDICT_CACHE_SIZE + 10):
        with pytest.raises(EndpointNotAllowed):
            policy.check(f"https://host-{i}.example/push")
    assert policy._verdict.cache_info().currsize == VERDICT_CACHE_SIZE


def test_the_length_limit_is_checked_per_url_not_per_origin() -> None:
    policy = EndpointPolicy(("fcm.googleapis.com",))
    policy.check("https://fcm.googleapis.com/short")
    with pytest.raises(EndpointNotAllowed, match="longer than"):
        policy.check("https://fcm.googleapis.com/" + "a" * 2048)


# --- resolution ---------------------------------------------------------------------------


class FakeResolver(AbstractResolver):
    """Resolves every name to fixed addresses (a DNS-rebinding attacker's view)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.answers[host]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def test_policy_resolver_refuses_a_name_resolving_to_loopback() -> None:
    fake = FakeResolver({"evil.example.com": "127.0.0.1", "good.example.com": "8.8.8.8"})
    resolver = PolicyResolver(ANY, fake)
    with pytest.raises(EndpointNotAllowed, match=r"127\.0\.0\.1"):
        await resolver.resolve("evil.example.com", 443)
    results = await resolver.resolve("good.example.com", 443)
    assert [r["host"] for r in results] == ["8.8.8.8"]


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254", "::1", "fd00::1"])
async def test_policy_resolver_refuses_every_private_answer(address: str) -> None:
    resolver = PolicyResolver(ANY, FakeResolver({"rebind.example.com": address}))
    with pytest.raises(EndpointNotAllowed):
        await resolver.resolve("rebind.example.com", 443)


async def test_policy_resolver_lets_an_exactly_listed_name_resolve_privately() -> None:
    policy = EndpointPolicy(("push.internal",), allow_http=True)
    resolver = PolicyResolver(policy, FakeResolver({"push.internal": "10.0.0.5"}))
    assert [r["host"] for r in await resolver.resolve("push.internal", 80)] == ["10.0.0.5"]


async def test_session_with_policy_resolver_never_connects_to_the_rebound_address() -> None:
    fake = FakeResolver({"evil.example.com": "127.0.0.1", "listed.example.com": "127.0.0.1"})
    async with stub_server() as stub:
        port = stub.base_url.rsplit(":", 1)[1]
        # The URL check passes (a public-looking name under "*"); the resolver must refuse.
        assert ANY_HTTP.check(f"http://evil.example.com:{port}/")
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(ANY_HTTP, fake))
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(EndpointNotAllowed):
                await session.post(f"http://evil.example.com:{port}/", data=b"x")
        assert fake.asked == ["evil.example.com"]
        assert stub.requests == []
        # Control: the same fake answer for an exactly listed name does connect.
        listed = EndpointPolicy(("listed.example.com",), allow_http=True)
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(listed, fake))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"http://listed.example.com:{port}/p", data=b"x") as response:
                assert response.status == 200
        assert [r["path"] for r in stub.requests] == ["/p"]


async def test_check_resolved() -> None:
    with pytest.raises(EndpointNotAllowed, match="non-public"):
        await ANY.check_resolved("localhost")
    await EndpointPolicy(("localhost",)).check_resolved("localhost")  # exactly listed
    await ANY.check_resolved("8.8.8.8")  # literals were judged by check()
