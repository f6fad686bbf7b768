"""A real FHIR R4 server (sekmet-fhir on 127.0.0.1) started once per test session, and the CDS
Hooks service configured against it (`service`, with `load` to put a patient on the server).

The integration tests are skipped only when sekmet-fhir cannot be installed because the package
index is unreachable; any other failure to install or start the server fails them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.service.app import create_app
from ips_screen.service.config import parse_config
from tests.fhir_support import (
    proposed_patient_records,
    put_people,
    running_test_server,
    strict_client,
    unique_patient_id,
    write_proposal,
)
from tests.support.cds import DR, SECRET_ENV, service_config, users_file
from tests.support.paths import FROZEN_NOW

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    with running_test_server() as server:
        yield server


@pytest.fixture
def fhir_client(fhir_server: FhirTestServer) -> Iterator[FhirClient]:
    """A client that asks the server to reject what it does not understand (unknown search
    parameters are otherwise silently ignored)."""
    with strict_client(fhir_server.base_url) as client:
        yield client


# --- the CDS Hooks service on the test server (test_cds_live.py, test_cds_paged_prefetch_live.py)


@pytest.fixture(scope="module")
def ehr_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Patient:
    """A patient `load` put on the server: its id and records, and its proposal when written."""

    def __init__(self, pid: str, resources: list[dict]) -> None:
        self.pid, self.resources = pid, resources
        self.task_id: str | None = None
        self.sr_id: str | None = None


@pytest.fixture
def load(fhir_client: FhirClient) -> Callable[..., Patient]:
    """PUT a propose patient's records; with `proposal`, also the screen's proposal."""

    def make(*, proposal: bool = False) -> Patient:
        pid = unique_patient_id("cds")
        resources = proposed_patient_records(pid)
        for resource in resources:
            fhir_client.update(resource)
        loaded = Patient(pid, resources)
        if proposal:
            loaded.task_id, loaded.sr_id = write_proposal(
                fhir_client, pid, resources, now=FROZEN_NOW
            )
        return loaded

    return make


@pytest.fixture
def service(
    fhir_server: FhirTestServer,
    fhir_client: FhirClient,
    ehr_key,
    tmp_path: Path,
    monkeypatch,
) -> TestClient:
    put_people(fhir_client, DR)  # the card's userId and the IPS service of [referral]
    monkeypatch.setenv("IPS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    data = service_config(ehr_key, users_file(tmp_path))
    data["fhir"] = {"base_url": fhir_server.base_url}
    data["ehr_fhir_servers"] = [fhir_server.base_url]  # http on loopback: must be listed
    data["state_dir"] = str(tmp_path / "serve-state")
    env = {**SECRET_ENV, "IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}
    return TestClient(create_app(parse_config(data), environ=env))
