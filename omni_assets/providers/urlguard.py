"""Where a video download may go: http(s) only, and never to an internal address.

A provider's answer names the URL we fetch, so a broken or hostile provider could point us at an
internal service (a metadata endpoint, an admin port on loopback): server-side request forgery.
Every hop of a download (the first URL and each redirect) is checked twice:

* by :func:`check_url`, before the request: the scheme is ``http`` or ``https``, and a host
  written as an IP address is a public one;
* by :class:`GuardedBackend`, when the connection is made: the host name is resolved once, every
  address it resolves to is checked, and the socket connects to the address that was checked (so
  a name that resolves differently the second time cannot slip through).

Loopback, private (RFC 1918, unique-local), link-local, shared, reserved, multicast and
unspecified addresses are refused, except for the origins in ``allowed`` (the provider's own base
URL: the emulator, a provider behind an internal gateway) or when the user allows private
destinations (``OMNI_ALLOW_PRIVATE_URLS``).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from .errors import DownloadError

__all__ = [
    "ALLOWED_SCHEMES",
    "GuardedBackend",
    "RefusedDestinationError",
    "check_url",
    "guarded_transport",
    "is_public",
    "origin_of",
]

ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedDestinationError(DownloadError):
    """A download URL (or a redirect) leads somewhere we never fetch from."""


def origin_of(url: str) -> tuple[str, int]:
    """``(host, port)`` of ``url``, the port filled in from the scheme."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_url(
    url: str, *, allowed: Iterable[tuple[str, int]] = (), allow_private: bool = False
) -> None:
    """Refuse ``url`` unless it is http(s) and, when its host is an IP address, a public one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise RefusedDestinationError(
            f"refused to fetch a {scheme or 'relative'}:// URL: video URLs must be http(s)"
        )
    host, port = origin_of(url)
    if not host:
        raise RefusedDestinationError(f"refused a video URL without a host ({scheme}://...)")
    address = _literal(host)
    trusted = allow_private or (host, port) in set(allowed)
    if address is not None and not trusted and not is_public(address):
        raise RefusedDestinationError(_refusal(host, port, address))


def _refusal(host: str, port: int, address: str) -> str:
    return (
        f"refused to fetch from {host}:{port}: it is a non-public address ({address}); only "
        "the provider's own host may be internal (set OMNI_ALLOW_PRIVATE_URLS=1 to allow others)"
    )


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync network backend, resolving and checking every host before connecting."""

    def __init__(self, allowed: Iterable[tuple[str, int]] = (), allow_private: bool = False):
        self._inner = httpcore.SyncBackend()
        self._allowed = {(h.lower(), p) for h, p in allowed}
        self._allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        trusted = self._allow_private or (host.lower(), port) in self._allowed
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not trusted:
            for address in addresses:
                if not is_public(address):
                    raise RefusedDestinationError(_refusal(host, port, address))
        last: Exception | None = None
        for address in addresses:  # connect to the address just checked, not a new lookup
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise RefusedDestinationError("refused to download through a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_transport(
    *,
    verify: ssl.SSLContext,
    limits: httpx.Limits,
    allowed: Iterable[tuple[str, int]] = (),
    allow_private: bool = False,
) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport`` whose connections go through :class:`GuardedBackend`."""
    transport = httpx.HTTPTransport(verify=verify, limits=limits, trust_env=False)
    # httpx builds its httpcore pool without a way to pass a network backend; the pool reads it
    # from this attribute for every new connection (httpcore 1.x).
    transport._pool._network_backend = GuardedBackend(allowed, allow_private)
    return transport
