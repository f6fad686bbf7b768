"""A fake Bulk Data exporter made of `responses` set-ups (kick-off, status polls, manifests,
NDJSON files), a Bulk client against it, and the fake clock the export sleeps through.

No test sleeps for the code under test: `FakeTime.sleep` records the delays and moves the fake
monotonic clock; the client's wall clock is fixed at NOW (for Retry-After dates). The fixtures
`fake`, `auth` and `client` are used as `fake, auth, client = bulk_responses.fake, ...` in a test
module; `mock` (the `responses` mock) is tests/fault/conftest.py's. `exporter` is one whole night
of an exporter (capability statement, kick-off, manifest, files) for the nightly job.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import responses

from ips_screen.fhir.auth import FhirAuth
from ips_screen.fhir.bulk import (
    ExportRequest,
    export,
)
from ips_screen.fhir.client import FhirClient

BASE = "https://fhir.example.org/r4"
OTHER = "https://files.example.net"
KICKOFF = f"{BASE}/$export"
STATUS = f"{BASE}/bulkstatus/job-1"
TYPES = ("Patient", "Condition", "Observation", "Procedure", "DocumentReference")
NOW = 1_900_000_000.0
SECRET_NAME = "Zebedee-Quux"  # a patient name that must never reach the logs


class FakeTime:
    """Injectable sleep and monotonic clock: sleeping records the delay and moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.delays: list[float] = []
        self.lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.delays.append(seconds)
            self.now += seconds

    def clock(self) -> float:
        return self.now


class CountingAuth(FhirAuth):
    """A token that changes on every request, like a renewed SMART token would."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.issued = 0
        self.reauthenticated = 0
        self._lock = threading.Lock()

    def authorization(self) -> str:
        with self._lock:
            self.issued += 1
            return f"Bearer tok-{self.issued}"

    def reauthenticate(self) -> bool:
        self.reauthenticated += 1
        return True


def ndjson(*resources: dict) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": SECRET_NAME}]}


def condition(cid: str, code: str = "82423001") -> dict:
    coding = [{"system": "http://snomed.info/sct", "code": code}]
    return {"resourceType": "Condition", "id": cid, "code": {"coding": coding}}


def outcome(text: str, code: str = "processing") -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def manifest(*outputs: tuple[str, str, int], **extra: object) -> dict:
    return {
        "transactionTime": "2030-01-02T03:04:05.678Z",
        "request": KICKOFF,
        "requiresAccessToken": True,
        "output": [{"type": t, "url": u, "count": c} for t, u, c in outputs],
        "error": [],
        **extra,
    }


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def auth() -> CountingAuth:
    return CountingAuth(BASE)


@pytest.fixture
def client(auth: CountingAuth) -> Iterator[FhirClient]:
    def no_client_sleep(seconds: float) -> None:
        raise AssertionError("the export must sleep through its own injected sleep")

    with FhirClient(BASE, auth=auth, sleep=no_client_sleep, clock=lambda: NOW) as c:
        yield c


def run(
    client: FhirClient,
    fake: FakeTime,
    work: Path,
    request: ExportRequest | None = None,
    **kwargs: object,
):
    return export(
        client, request or ExportRequest(), work, sleep=fake.sleep, clock=fake.clock, **kwargs
    )


def kickoff(mock: responses.RequestsMock, url: str = KICKOFF, status_url: str = STATUS) -> None:
    mock.get(url, status=202, headers={"Content-Location": status_url})


def done(mock: responses.RequestsMock, body: dict, url: str = STATUS) -> None:
    mock.get(url, json=body)
    mock.delete(url, status=202)


def calls(mock: responses.RequestsMock, method: str, prefix: str) -> list:
    return [
        c for c in mock.calls if c.request.method == method and c.request.url.startswith(prefix)
    ]


def simple_export(mock: responses.RequestsMock) -> None:
    kickoff(mock)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1"), patient("p2")))
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))


# -- one night of a fake exporter, for `ips-screen nightly` (test_nightly_bulk_faults.py)


def statement(*types: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [
            {
                "mode": "server",
                "operation": [{"name": "export"}],
                "resource": [{"type": t} for t in types],
            }
        ],
    }


@contextmanager
def exporter(
    files: dict[str, tuple[bytes, int | None]],
    *,
    when: str,
    kick_off: str = f"{BASE}/$export",
    types: tuple[str, ...] = (*TYPES, "ServiceRequest", "Task"),
    errors: tuple[bytes, ...] = (),
) -> Iterator[responses.RequestsMock]:
    """One night of a fake exporter: files by type as (body, manifest count), and the bodies of
    its error files (OperationOutcomes)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{BASE}/metadata", json=statement(*types))
        mock.get(kick_off, status=202, headers={"Content-Location": STATUS})
        output = [
            {"type": t, "url": f"{BASE}/files/{t}.ndjson", **({"count": c} if c else {})}
            for t, (_, c) in files.items()
        ]
        body = {"transactionTime": when, "request": kick_off, "requiresAccessToken": True}
        error = [
            {"type": "OperationOutcome", "url": f"{BASE}/files/error{n}.ndjson"}
            for n in range(len(errors))
        ]
        mock.get(STATUS, json={**body, "output": output, "error": error})
        mock.delete(STATUS, status=202)
        for t, (data, _) in files.items():
            mock.get(f"{BASE}/files/{t}.ndjson", body=data)
        for n, data in enumerate(errors):
            mock.get(f"{BASE}/files/error{n}.ndjson", body=data)
        # The night's report reads the open review Tasks (its "Work outstanding"): none here.
        # Unanswered, `responses` would refuse the connection and the job would retry for real.
        searchset = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        mock.get(re.compile(re.escape(BASE) + r"/(Task|ServiceRequest)(\?.*)?$"), json=searchset)
        yield mock
