"""Which push endpoints the service may talk to (the SSRF guard).

Two checks: `EndpointPolicy.check` on the URL (scheme, userinfo, allowlist,
IP-literal spellings), and `PolicyResolver` at connect time, so that the address
actually dialled is the one that was checked (defeats DNS rebinding).

The URL check depends only on the part before the path (scheme, user info, host,
port): its verdict is cached per such prefix, in a bounded LRU, because every push
to one push service would otherwise repeat it. The connect-time check is never cached.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from push_service.errors import EndpointNotAllowed

MAX_ENDPOINT_LENGTH = 2048
VERDICT_CACHE_SIZE = 4096  # distinct origins remembered; refused ones count too
# Scheme (no ":" before "://", so it is urlsplit's scheme), then the netloc up to / ? #.
_ORIGIN_PREFIX = re.compile(r"[^:/?#]*://[^/?#]*")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
# ASCII names only: IDNA would turn e.g. fullwidth digits into an IP literal after the check.
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges that carry an IPv4 address in their low 32 bits (compatible, SIIT, NAT64).
_IPV4_IN_LOW_BITS = tuple(
    ipaddress.IPv6Network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    origin: str


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _IPV4_IN_LOW_BITS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only (IPv4 inside IPv6 included)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes if it is an IP literal in any spelling.

    Resolvers accept `2130706433`, `0x7f.1` and `0177.0.0.1` as 127.0.0.1, so a
    host whose last label is numeric is treated as IPv4, as browsers do.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        raise EndpointNotAllowed(f"malformed IP address {host!r}") from None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _origin_prefix(url: str) -> str | None:
    """`url` up to where urlsplit's netloc ends, when it starts `<scheme>://`.

    The verdict depends on nothing after it: two URLs with the same prefix have the
    same scheme and netloc for urlsplit (it removes tab and newline characters
    everywhere, which keeps this true). None for other shapes: checked uncached.
    """
    match = _ORIGIN_PREFIX.match(url)
    return match.group() if match else None


def format_origin(scheme: str, host: str, port: int | None) -> str:
    """`scheme://host[:port]`, the port left out when it is the scheme's default."""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"https": 443, "http": 80}[scheme]:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}"


def origin_of(url: str) -> str | None:
    """The origin of an endpoint URL; None for one that has none (a refused device's)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        return format_origin(parts.scheme, parts.hostname, parts.port)
    except ValueError:
        return None


def host_label(origin: str) -> str:
    """A push service as metrics name it: host, and port when not the default."""
    return origin.partition("://")[2]


class EndpointPolicy:
    """Allowlist of hosts (`host`, `*.suffix`, `*`) plus the scheme rule."""

    def __init__(self, allowlist: tuple[str, ...], allow_http: bool = False) -> None:
        entries = [entry.strip().lower().rstrip(".") for entry in allowlist if entry.strip()]
        self.any_public = "*" in entries
        self.exact = frozenset(e for e in entries if not e.startswith("*"))
        self.suffixes = tuple(e[1:] for e in entries if e.startswith("*."))
        self.schemes = ("https", "http") if allow_http else ("https",)
        # functools.lru_cache is thread-safe: large messages are parsed in a worker thread.
        self._verdict = functools.lru_cache(maxsize=VERDICT_CACHE_SIZE)(self._prefix_verdict)

    def check(self, url: str) -> Endpoint:
        """Parse and vet an endpoint URL; raises EndpointNotAllowed with the reason."""
        if len(url) > MAX_ENDPOINT_LENGTH:
            raise EndpointNotAllowed(f"endpoint longer than {MAX_ENDPOINT_LENGTH} characters")
        prefix = _origin_prefix(url)
        if prefix is None:
            return self._check_url(url)
        verdict = self._verdict(prefix)
        if isinstance(verdict, str):
            raise EndpointNotAllowed(verdict)
        return Endpoint(url=url, host=verdict.host, origin=verdict.origin)

    def _prefix_verdict(self, prefix: str) -> Endpoint | str:
        """The verdict on every URL starting with `prefix`: an Endpoint, or why it is refused."""
        try:
            return self._check_url(prefix)
        except EndpointNotAllowed as exc:
            return exc.detail

    def _check_url(self, url: str) -> Endpoint:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EndpointNotAllowed(f"endpoint is not a valid URL: {exc}") from None
        if parts.scheme not in self.schemes:
            allowed = " or ".join(self.schemes)
            raise EndpointNotAllowed(f"endpoint scheme must be {allowed}, got {parts.scheme!r}")
        if "@" in parts.netloc:
            raise EndpointNotAllowed("endpoint must not contain user information")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EndpointNotAllowed("endpoint has no host")
        if not (_HOSTNAME.fullmatch(host) or (":" in host and _is_ipv6(host))):
            raise EndpointNotAllowed(f"endpoint host {host!r} is not a valid host name")
        self._check_host(host)
        return Endpoint(url=url, host=host, origin=format_origin(parts.scheme, host, port))

    def _check_host(self, host: str) -> None:
        if host in self.exact:
            return
        address = parse_ip_literal(host)
        if address is not None:
            if self.any_public and is_public(address):
                return
            raise EndpointNotAllowed(f"endpoint address {host} is not allowed")
        if host == "localhost" or host.endswith(".localhost"):
            raise EndpointNotAllowed(f"endpoint host {host} is not allowed")
        if self.any_public or any(host.endswith(suffix) for suffix in self.suffixes):
            return
        raise EndpointNotAllowed(f"endpoint host {host} is not in PUSH_ENDPOINT_ALLOWLIST")

    def address_allowed(self, host: str, address: str) -> bool:
        """Whether `host` may be reached at `address` (an exactly listed host may be private)."""
        if host.rstrip(".").lower() in self.exact:
            return True
        return is_public(ipaddress.ip_address(address.split("%", 1)[0]))

    async def check_resolved(self, host: str) -> None:
        """Refuse a name that resolves to a non-public address; unresolvable names pass.

        Used at `/subscribe`, where DNS may be unavailable; the connect-time
        resolver check is the one that cannot be bypassed.
        """
        if host in self.exact or parse_ip_literal(host) is not None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return
        for info in infos:
            if not self.address_allowed(host, str(info[4][0])):
                raise EndpointNotAllowed(f"endpoint host {host} resolves to a non-public address")


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that drops connections to addresses the policy refuses."""

    def __init__(self, policy: EndpointPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        refused = [r["host"] for r in results if not self.policy.address_allowed(host, r["host"])]
        if refused:
            raise EndpointNotAllowed(f"endpoint host {host.rstrip('.')} resolves to {refused[0]}")
        return results

    async def close(self) -> None:
        await self.inner.close()
