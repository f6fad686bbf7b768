"""Fixtures for the CDS Hooks service tests: the EHR's signing key; `make_client`, which builds
the service app (with a `FakeFhir` practice server unless given one) behind a TestClient; and
`servers`, real HTTP servers on 127.0.0.1 standing in for an EHR's FHIR server."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen.service.app import create_app
from ips_screen.service.config import parse_config

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from tests.support.cds import SECRET_ENV, service_config, users_file
from tests.support.fake_fhir import FakeFhir
from tests.support.local_server import Handler, LocalServer


@pytest.fixture(scope="session")
def ehr_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def make_client(ehr_key, tmp_path, monkeypatch):
    monkeypatch.setenv("IPS_SCREEN_STATE_DIR", str(tmp_path / "state"))

    def make(fake: FakeFhir | None = None, **extra: Any) -> tuple[TestClient, Any]:
        extra.setdefault("state_dir", str(tmp_path / "serve-state"))
        config = parse_config(service_config(ehr_key, users_file(tmp_path), **extra))
        backend = fake or FakeFhir()
        env = {**SECRET_ENV, "IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}
        app = create_app(config, fhir_client=backend, environ=env)  # type: ignore[arg-type]
        return TestClient(app), app

    return make


@pytest.fixture
def servers() -> Iterator[Callable[[Handler], LocalServer]]:
    """`servers(handle)` starts a `LocalServer`; every one started is closed at teardown."""
    started: list[LocalServer] = []

    def start(handle: Handler) -> LocalServer:
        started.append(LocalServer(handle))
        return started[-1]

    yield start
    for server in started:
        server.close()
