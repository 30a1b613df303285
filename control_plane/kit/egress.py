"""Outbound HTTP to URLs that users supply (webhooks): the address checked is the address used.

Checking a URL by resolving its host and then letting the HTTP client resolve the host again to
connect leaves a gap (DNS rebinding: a public answer when checked, 127.0.0.1 or
169.254.169.254 when connecting). ``pinned_client`` closes it: its connections go through
``PinnedBackend``, an httpcore network backend that resolves the host once, refuses the
connection unless every address is public (``public``; any address with ``allow_private``), and
connects to one of exactly those addresses. TLS is untouched: httpcore verifies the certificate
and sends SNI for the URL's host name (the connection's origin), never for the address; the
``Host`` header is the URL's too. A refusal is ``EgressRefused``, an ``httpx.ConnectError``.

httpx 0.28 takes no network backend (encode/httpx PR 3749 proposes one), so ``PinnedTransport``
is a small httpx transport over an httpcore connection pool built with the backend, through
public APIs of both. The client sends directly: no ``HTTP(S)_PROXY`` from the environment (a
proxy would resolve the name itself) and no redirects (a redirect could lead anywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence

import anyio
import httpcore
import httpx

#: Resolves ``(host, port)`` to IP address strings, in the order to try them; raises ``OSError``
#: when the name does not resolve. ``system_resolver`` by default; tests pass their own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: How long a name may take to resolve when the request sets no connect timeout.
RESOLVE_SECONDS = 3.0


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer (``getaddrinfo``: hosts file, DNS), each address once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_NAT64: typing.Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix


def public(address: str) -> bool:
    """Whether an IP address may be reached: global, not multicast or reserved. An IPv6
    address that carries an IPv4 address (IPv4-mapped, 6to4 ``2002::/16``, NAT64
    ``64:ff9b::/96``) must also carry a public one; a zone id is ignored."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            carried = ip.sixtofour
            if carried is None and ip in _NAT64:
                carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            if carried is not None and not public(str(carried)):
                return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


class Refused(Exception):
    """A host that may not be connected to; ``reason`` is a short phrase for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def vetted_addresses(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """Resolve ``host`` once and return its addresses if every one may be reached.

    Raises ``Refused`` when the name does not resolve (within ``RESOLVE_SECONDS``) or any
    address is loopback, link-local, private, reserved or multicast (unless ``allow_private``).
    """
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):  # a resolver that does not answer refuses
            addresses = list(await resolver(host, port))
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise Refused("the host does not resolve") from exc
    try:  # every answer must be an address, even where private ones are allowed
        judged = [public(a) for a in addresses]
    except ValueError as exc:
        raise Refused("the host does not resolve") from exc
    if not judged:
        raise Refused("the host does not resolve")
    if not (allow_private or all(judged)):
        raise Refused("resolves to a loopback, link-local, private or reserved address")
    return addresses


class _RefusedConnect(httpcore.ConnectError):
    """Raised inside httpcore, so its pool treats the refusal as any failed connect."""


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses ``vetted_addresses`` let
    through, trying them in order; everything else is ``httpcore.AnyIOBackend``'s."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self._allow_private, self._resolver = allow_private, resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await vetted_addresses(
                host, port, allow_private=self._allow_private, resolver=self._resolver
            )
        except Refused as exc:
            raise _RefusedConnect(exc.reason) from exc
        error: httpcore.ConnectError | None = None
        with anyio.move_on_after(timeout) as scope:
            for address in addresses:
                try:
                    return await self._inner.connect_tcp(
                        address, port, None, local_address, socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
        raise error or httpcore.ConnectError(f"no address of {host} answered")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _RefusedConnect("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressRefused(httpx.ConnectError):
    """The connection was refused before it was made; the message is the reason."""


# httpcore's exceptions as httpx's, most specific first (what httpx's own transport does).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (_RefusedConnect, EgressRefused),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections go through a ``PinnedBackend``."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits | None = None,
        verify: typing.Any = True,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(allow_private=allow_private, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def pinned_client(
    *,
    allow_private: bool,
    timeout: float,
    resolver: Resolver = system_resolver,
    verify: typing.Any = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for user-supplied URLs: pinned connections (``PinnedTransport``),
    ``timeout`` seconds per phase, no redirects, no proxies from the environment. ``verify``:
    as httpx's (an ``ssl.SSLContext`` in tests that trust a CA of their own)."""
    return httpx.AsyncClient(
        transport=PinnedTransport(allow_private=allow_private, resolver=resolver, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
