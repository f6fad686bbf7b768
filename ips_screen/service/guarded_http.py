"""One guarded HTTP GET, for what the service reads from hosts named by its callers.

The CDS Hooks service reads the EHR's `fhirServer` (a URL in the request body) and the EHRs' JWKS
documents. `guarded_get` makes such a read safe to do on a caller's say-so:

- http or https only; redirects are never followed (a 3xx is refused, so a redirect cannot lead
  to another host or scheme);
- the host is resolved once and EVERY address it resolves to must be public (not loopback,
  private, link-local, shared, reserved or multicast) unless the caller allows private addresses
  (an origin the configuration lists); the connection then goes to the address that was checked,
  so a second DNS answer cannot swap in an internal one (TLS still verifies the host name);
- a total deadline, name resolution included (a watchdog closes the socket when it passes,
  however slowly the server trickles its headers or body), and a cap on the body's size.

Failures raise `FetchRefused` whose reason is for the log only (it may name hosts and statuses,
never bodies).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ips_screen import __version__

Resolver = Callable[[str, int], list[str]]
CHUNK = 64 * 1024


class FetchRefused(Exception):
    """The read was refused or failed; `reason` is for the server log, never for the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc}") from None
    return [str(info[4][0]) for info in infos]


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def checked_address(host: str, port: int, *, allow_private: bool, resolver: Resolver) -> str:
    """The address to connect to: `host`'s first address, after checking all of them."""
    addresses = resolver(host, port)
    if not addresses:
        raise FetchRefused(f"{host} resolves to no address")
    if not allow_private:
        blocked = [a for a in addresses if not is_public(a)]
        if blocked:
            raise FetchRefused(f"{host} resolves to a non-public address ({blocked[0]})")
    return addresses[0]


def _within(seconds: float, work: Callable[[], str]) -> str:
    """`work()` (name resolution, which has no timeout of its own), given up after `seconds`."""
    if seconds <= 0:
        raise FetchRefused("deadline passed before the request")
    outcome: list[str | BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise FetchRefused("resolving the host took longer than the deadline")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a host name made to an address checked beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout: float, **kw: object) -> None:
        super().__init__(host, port, timeout=timeout, **kw)  # type: ignore[arg-type]
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def abort(self) -> None:
        """Break the connection from another thread (the deadline watchdog)."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPS(http.client.HTTPSConnection, _PinnedHTTP):
    """The same over TLS: the certificate is checked against the host name (SNI too)."""


_TLS = ssl.create_default_context()


def guarded_get(
    url: str,
    *,
    headers: Mapping[str, str],
    deadline: float,
    max_bytes: int,
    allow_private: bool = False,
    resolver: Resolver = resolve,
    clock: Callable[[], float] = time.monotonic,
) -> Fetched:
    """GET `url` by the rules in the module docstring; `deadline` is a `clock()` time.

    Any status is returned except a redirect (refused); the body is read only for 200."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        raise FetchRefused(f"not an http(s) URL: {scheme}://")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchRefused("malformed port") from None
    address = _within(
        deadline - clock(),
        lambda: checked_address(host, port, allow_private=allow_private, resolver=resolver),
    )
    remaining = deadline - clock()
    if remaining <= 0:
        raise FetchRefused("deadline passed before the request")
    if scheme == "https":
        conn: _PinnedHTTP = _PinnedHTTPS(host, port, address, remaining, context=_TLS)
    else:
        conn = _PinnedHTTP(host, port, address, remaining)
    expired = threading.Event()

    def watchdog() -> None:
        expired.set()
        conn.abort()

    timer = threading.Timer(remaining, watchdog)
    timer.daemon = True
    timer.start()
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    sent = {"User-Agent": f"ips-screen/{__version__}", "Accept-Encoding": "identity", **headers}
    resp: http.client.HTTPResponse | None = None
    try:
        conn.request("GET", target, headers=sent)
        resp = conn.getresponse()
        if 300 <= resp.status < 400:
            raise FetchRefused(f"HTTP {resp.status} redirect from {host} refused (not followed)")
        if resp.status != 200:
            return Fetched(resp.status, b"")
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefused(f"response from {host} larger than {max_bytes} bytes")
        chunks, size = [], 0
        while chunk := resp.read1(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchRefused(f"response from {host} larger than {max_bytes} bytes")
            chunks.append(chunk)
            if expired.is_set():
                break
        if expired.is_set():
            raise FetchRefused(f"reading {host} took longer than the deadline")
        return Fetched(200, b"".join(chunks))
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise FetchRefused(f"reading {host} took longer than the deadline") from None
        raise FetchRefused(f"reading {host} failed: {type(exc).__name__}") from None
    finally:
        timer.cancel()
        if resp is not None:
            resp.close()
        conn.close()
