"""The practice FHIR client with every write refused, for `demo_trust_public_sandbox = true`.

The public CDS Hooks sandbox signs its tokens in the browser with a key published in its source,
so anyone can mint a token it would sign: a service that trusts it must not change anything on a
practice server. `ReadOnlyBackend` passes reads through and raises `WritesOff` (a `ServerError`,
so the routes answer as for a failed write and write nothing) on create, update, transaction
and any request that is not a GET or HEAD.
"""

from __future__ import annotations

from typing import Any

from ips_screen.errors import ServerError


class WritesOff(ServerError):
    """A write was attempted while writes are off."""

    def __init__(self) -> None:
        super().__init__("writes are off (demo_trust_public_sandbox = true): nothing was written")


class ReadOnlyBackend:
    """Wraps a FHIR client: reads pass through, writes raise `WritesOff`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        raise WritesOff()

    def update(self, *args: Any, **kwargs: Any) -> Any:
        raise WritesOff()

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise WritesOff()

    def raw_request(self, method: str, url: str, **kwargs: Any) -> Any:
        if method.upper() not in ("GET", "HEAD"):
            raise WritesOff()
        return self._client.raw_request(method, url, **kwargs)
