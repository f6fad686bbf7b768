"""A real FHIR R4 server (sekmet-fhir on 127.0.0.1) started once per test session.

The integration tests are skipped only when sekmet-fhir cannot be installed because the package
index is unreachable; any other failure to install or start the server fails them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from tests.fhir_support import running_test_server, strict_client


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
