"""A write lease held on the FHIR server itself: writers on different machines exclude each other.

The local `PracticeLock` (a `flock`) only excludes writers on one machine. The lease is one Basic
resource on the server, with a fixed id (`Basic/ips-screen-writer-lease`) and identifier, holding
the holder's id (host, pid and a random part) and an expiry instant:

    with ServerLease(client) as lease:     # LockHeld (exit 7) while another writer holds it
        for ...:
            lease.renew()                  # cheap: writes only once a third of the term is gone
            ...write...

- take: read the lease; free (released, or expired by the local clock) or ours: update it with
  If-Match on the version read, so of two writers taking it at once one wins and the other gets
  `LockHeld`. An expired lease is taken over. Absent: created by a PUT of the fixed id; a PUT
  that finds one created meanwhile (answer 200, not 201) gives it back and gets `LockHeld`.
- renew: the same If-Match update with a new expiry. A renewal that finds the lease taken by
  another writer (its term ran out while this writer was stalled) raises `LockHeld`: writing
  stops. A renewal whose own earlier answer was lost (412, but the lease names us) carries on.
- release: the expiry set to now (If-Match). If that fails the lease simply expires.

Clocks: expiry is compared with the local clock, so the machines' clocks must agree to well
within the term (NTP does). The term (default 10 minutes) bounds how long a crashed writer
blocks the others. Servers must allow update-as-create (PUT of a new id), as most do.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from ips_screen.codes import BASE
from ips_screen.errors import ConflictError, LockHeld, ServerError
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.proposals.common import validated

log = logging.getLogger("ips_screen.writeback")

LEASE_ID = "ips-screen-writer-lease"
LEASE_IDENTIFIER = {"system": f"{BASE}/identifier/writer-lease", "value": "proposal-writer"}
HOLDER_URL = f"{BASE}/StructureDefinition/lease-holder"
EXPIRES_URL = f"{BASE}/StructureDefinition/lease-expires"
LEASE_SECONDS = 600.0
RENEW_AFTER = 1 / 3  # of the term


def holder_id() -> str:
    """This process: host, pid and a random part (two leases of one process differ)."""
    return f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"


def _instant(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _extension(resource: Resource, url: str) -> str | None:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            value = ext.get("valueString", ext.get("valueInstant"))
            return value if isinstance(value, str) else None
    return None


def lease_state(resource: Resource) -> tuple[str | None, float]:
    """(holder, expiry as a timestamp) of a lease resource; an unreadable expiry is 0 (free)."""
    expires = _extension(resource, EXPIRES_URL)
    try:
        when = datetime.fromisoformat(expires).timestamp() if expires else 0.0
    except ValueError:
        when = 0.0
    return _extension(resource, HOLDER_URL), when


class ServerLease:
    """The server's write lease, held from `acquire` (or `with`) to `release`."""

    def __init__(
        self,
        client: FhirClient,
        *,
        holder: str | None = None,
        seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.holder = holder or holder_id()
        self.seconds = seconds
        self.clock = clock
        self._version: str | None = None
        self._renewed = 0.0

    @property
    def held(self) -> bool:
        return self._version is not None

    def _resource(self, expires: float) -> Resource:
        return validated(
            {
                "resourceType": "Basic",
                "id": LEASE_ID,
                "identifier": [LEASE_IDENTIFIER],
                "code": {"text": "ips-screen proposal writer lease"},
                "extension": [
                    {"url": HOLDER_URL, "valueString": self.holder},
                    {"url": EXPIRES_URL, "valueInstant": _instant(expires)},
                ],
            }
        )

    def _current(self) -> tuple[Resource, str | None] | None:
        found = [
            r
            for r in self.client.search("Basic", {"_id": LEASE_ID})
            if r.get("resourceType") == "Basic" and r.get("id") == LEASE_ID
        ]
        if not found:
            return None
        meta = found[0].get("meta") or {}
        version = meta.get("versionId") if isinstance(meta, dict) else None
        return found[0], str(version) if version is not None else None

    def _held_by_other(self, resource: Resource) -> LockHeld | None:
        holder, expires = lease_state(resource)
        if holder != self.holder and expires > self.clock():
            return LockHeld(
                f"another ips-screen writer ({holder or 'unknown'}) holds the write lease on "
                f"{self.client.base_url} until {_instant(expires)} (Basic/{LEASE_ID} on that "
                "server); try again when it has finished, or after the lease expires"
            )
        return None

    def _write(self, version: str | None) -> None:
        now = self.clock()
        result = self.client.update(self._resource(now + self.seconds), if_match=version)
        self._version, self._renewed = result.version_id or "", now

    def acquire(self) -> None:
        if self.held:
            raise RuntimeError("the server lease is already held by this object")
        current = self._current()
        if current is None:
            now = self.clock()
            result = self.client.update(self._resource(now + self.seconds), retry=False)
            self._version, self._renewed = result.version_id or "", now
            if result.status != 201:  # created by another writer between our read and write
                self.release()
                raise LockHeld(
                    f"another ips-screen writer created the write lease on "
                    f"{self.client.base_url} at the same time; try again"
                )
            log.info("took the write lease on the FHIR server (new)")
            return
        self._take(*current)
        log.info("took the write lease on the FHIR server")

    def _take(self, resource: Resource, version: str | None) -> None:
        refused = self._held_by_other(resource)
        if refused is not None:
            raise refused
        try:
            self._write(version)
        except ConflictError:
            again = self._current()
            if again is not None and lease_state(again[0])[0] == self.holder:
                self._version = again[1] or ""  # our write went through; its answer was lost
                return
            holder = lease_state(again[0])[0] if again else None
            raise LockHeld(
                f"another ips-screen writer ({holder or 'unknown'}) took the write lease on "
                f"{self.client.base_url} just now; try again later"
            ) from None

    def renew(self, *, force: bool = False) -> None:
        """Extend the term once a third of it has gone (or now, with `force`)."""
        if not self.held:
            raise RuntimeError("the server lease is not held")
        if not force and self.clock() - self._renewed < self.seconds * RENEW_AFTER:
            return
        try:
            self._write(self._version)
        except ConflictError:
            current = self._current()
            self._version = None
            if current is None:
                raise LockHeld(f"the write lease on {self.client.base_url} was deleted") from None
            self._take(*current)  # LockHeld when another writer has it now

    def release(self) -> None:
        version, self._version = self._version, None
        if version is None:
            return
        try:
            self.client.update(self._resource(self.clock()), if_match=version, retry=False)
        except ServerError as exc:
            log.warning("could not release the write lease (it expires by itself): %s", exc)

    def __enter__(self) -> ServerLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
