"""One writer per FHIR server: every spelling of a base URL shares the local lock, the lock dir can
be shared, and writers with separate lock dirs (other machines) are kept apart by the write lease
held on the server itself (a real test server of this module's own: the lease is server-wide)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.errors import LockHeld
from ips_screen.fhir.client import FhirClient
from ips_screen.writeback.lease import LEASE_ID, LEASE_SECONDS, ServerLease, lease_state
from ips_screen.writeback.lock import PracticeLock, default_lock_path, lock_key
from tests.fhir_support import running_test_server
from tests.support.paths import FROZEN_NOW

AS_OF = FROZEN_NOW.date().isoformat()
SAME_SERVER = [
    "http://127.0.0.1:8080/fhir",
    "HTTP://localhost:8080/fhir/",
    "http://LOCALHOST:8080//fhir",
    "http://[::1]:8080/fhir//",
    "http://127.0.0.1:8080/fhir/",
]


@pytest.mark.parametrize(
    ("urls", "same"),
    [
        (SAME_SERVER, True),
        (["https://FHIR.example.org/r4", "https://fhir.example.org:443/r4/"], True),
        (["http://fhir.example.org/r4", "http://fhir.example.org:80//r4"], True),
        (["http://127.0.0.1:8080/fhir", "http://127.0.0.1:8081/fhir"], False),
        (["https://fhir.example.org/r4", "https://fhir.example.org/R4"], False),  # paths differ
        (["https://fhir.example.org/r4", "http://fhir.example.org/r4"], False),
    ],
)
def test_every_spelling_of_one_server_shares_a_lock(tmp_path: Path, urls: list[str], same: bool):
    environ = {"IPS_SCREEN_STATE_DIR": str(tmp_path)}
    paths = {default_lock_path(url, environ) for url in urls}
    assert (len(paths) == 1) is same
    assert (len({lock_key(url) for url in urls}) == 1) is same


def test_the_lock_dir_is_configured_or_from_the_environment(tmp_path: Path):
    url = SAME_SERVER[0]
    state = {"IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}
    assert default_lock_path(url, state).parent == tmp_path / "state" / "locks"
    shared = {**state, "IPS_SCREEN_LOCK_DIR": str(tmp_path / "shared")}
    assert default_lock_path(url, shared).parent == tmp_path / "shared"
    assert default_lock_path(url, shared, tmp_path / "cfg").parent == tmp_path / "cfg"


def test_a_lock_file_is_readable_by_other_users_and_locks_read_only(tmp_path: Path):
    path = default_lock_path(SAME_SERVER[0], {"IPS_SCREEN_LOCK_DIR": str(tmp_path)})
    with PracticeLock(path):
        assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o444)  # as another user's file looks to this one: a read-only open still locks
    try:
        with PracticeLock(path, base_url="x"), pytest.raises(LockHeld):
            PracticeLock(path, base_url="x").acquire()
    finally:
        path.chmod(0o644)


def screen_write(url: str, environ: dict[str, str], out: Path) -> int:
    return main(["-q", "screen", url, "--write", "--out", str(out), "--as-of", AS_OF], environ)


def test_screen_write_with_another_spelling_of_the_url_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    environ = {"IPS_SCREEN_LOCK_DIR": str(tmp_path / "locks")}
    held = "http://localhost:9/fhir/"
    with PracticeLock(default_lock_path(held, environ), base_url=held):
        assert screen_write("HTTP://127.0.0.1:9//fhir", environ, tmp_path / "out") == 7
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ips-screen: error: another ips-screen run")
    assert f"pid {os.getpid()}" in err[0]


# -- the lease on the server ---------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[FhirTestServer]:
    """A server of the test's own: the lease is server-wide and each test's clock restarts."""
    with running_test_server() as server:
        yield server


@pytest.mark.integration
def test_writers_with_separate_lock_dirs_exclude_each_other_through_the_server_lease(
    own_server: FhirTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], frozen_clock
):
    url = own_server.base_url
    with FhirClient(url) as client:
        other_machine = ServerLease(client, holder="machine-b pid 4242 abcd1234")
        other_machine.acquire()
        try:
            # This machine's writer has a lock dir of its own: only the lease can stop it.
            environ = {"IPS_SCREEN_LOCK_DIR": str(tmp_path / "locks-a")}
            assert screen_write(url, environ, tmp_path / "out1") == 7
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1
            assert err[0].startswith(
                "ips-screen: error: another ips-screen writer (machine-b pid 4242 abcd1234) "
                f"holds the write lease on {url} until 2026-11-26T09:40:00Z"
            )
            with pytest.raises(LockHeld, match="machine-b pid 4242"):
                ServerLease(client, holder="machine-c").acquire()

            # The other machine stalls past the lease's term: this one takes over and writes.
            frozen_clock.shift(LEASE_SECONDS + 1)
            assert screen_write(url, environ, tmp_path / "out2") == 0
            # Released by that run, so free at once; and the stalled writer may not carry on
            # once another has taken the lease.
            with ServerLease(client, holder="machine-c"):
                with pytest.raises(LockHeld, match=r"another ips-screen writer \(machine-c\)"):
                    other_machine.renew(force=True)
                assert not other_machine.held
        finally:
            other_machine.release()
        resource = next(iter(client.search("Basic", {"_id": LEASE_ID})))
    assert lease_state(resource) == ("machine-c", FROZEN_NOW.timestamp() + LEASE_SECONDS + 1)


@pytest.mark.integration
def test_a_lease_is_renewed_while_writing_and_released_after(
    own_server: FhirTestServer, frozen_clock
):
    with FhirClient(own_server.base_url) as client:
        with ServerLease(client, holder="renewing") as lease:
            first = lease_state(next(iter(client.search("Basic", {"_id": LEASE_ID}))))
            frozen_clock.shift(60)
            lease.renew()  # not due yet: nothing written
            assert lease_state(next(iter(client.search("Basic", {"_id": LEASE_ID})))) == first
            frozen_clock.shift(LEASE_SECONDS / 3)
            lease.renew()
            holder, expires = lease_state(next(iter(client.search("Basic", {"_id": LEASE_ID}))))
            assert holder == "renewing" and expires == first[1] + 60 + LEASE_SECONDS / 3
        _, released = lease_state(next(iter(client.search("Basic", {"_id": LEASE_ID}))))
        assert released == FROZEN_NOW.timestamp() + 60 + LEASE_SECONDS / 3
        with ServerLease(client, holder="next"):  # free at once, no waiting for the term
            pass


@pytest.mark.integration
def test_nightly_writes_under_the_configured_lock_dir(
    own_server: FhirTestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    shared = tmp_path / "shared-locks"
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "server"\n[fhir]\nbase_url = "{own_server.base_url}"\n'
        '[export]\nmode = "rest"\n'
        f'[output]\nstate_dir = "state"\nlock_dir = "{shared.name}"\n'
    )
    argv = ["-q", "nightly", "--config", str(config), "--as-of", AS_OF]
    spelled = own_server.base_url.replace("127.0.0.1", "LOCALHOST") + "/"
    with PracticeLock(default_lock_path(spelled, {}, shared), base_url=spelled):
        assert main(argv, {}) == 7  # the service, say, is writing to the same server
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another ips-screen run is writing to" in err[0]
    assert main(argv, {}) == 0
