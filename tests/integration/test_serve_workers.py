"""`ips-screen serve` as real processes on 127.0.0.1 sharing one state_dir: what one process
learned (a token's jti, a card shown, a session) holds in the other, and after a restart.

Two kinds of run:

- two separate `ips-screen serve` processes on two ports with the same configuration and
  state_dir: the test chooses which process answers each call, so "the other worker" is certain;
- one `ips-screen serve --workers 2`: uvicorn's processes share one port and the kernel picks the
  process for each connection, so a call cannot be aimed at a worker. Each call there goes on a
  new connection: a per-process cache would be found out by the replayed token or the feedback
  reaching a process that did not see the first call.

The processes run on the real clock (the test's clock is frozen): EHR tokens are minted at the
time in the service's `Date` header, so they are valid for it whatever the test's clock says.
The practice FHIR server is the integration tests' real one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.service.sessions import COOKIE
from tests.fhir_support import load_proposed_patient, put_people
from tests.support.cds import (
    DR,
    FEEDBACK,
    ISS,
    KID,
    PASSWORD,
    SERVICE,
    feedback_item,
    hook_request,
    public_jwks,
    users_file,
)
from tests.support.paths import FROZEN_NOW
from tests.support.people import IPS_SERVICE

pytestmark = pytest.mark.integration

PUBLIC = "http://127.0.0.1:8443"  # the URL EHRs are told to call: the JWT audience
SECRET = "w" * 48
START_TIMEOUT = 90.0
IPS_SCREEN = Path(sys.executable).with_name("ips-screen")


@pytest.fixture(scope="module")
def ehr_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _toml(value: Any) -> str:
    """A TOML value for strings, lists and tables (JSON strings are valid TOML strings)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


@pytest.fixture
def config_file(
    tmp_path: Path, ehr_key, fhir_server: FhirTestServer, fhir_client: FhirClient
) -> Path:
    put_people(fhir_client, DR)  # the card's userId and the IPS service of [referral]
    path = tmp_path / "serve.toml"
    path.write_text(
        f"public_base_url = {_toml(PUBLIC)}\n"
        'state_dir = "state"\n'
        f"ehr_fhir_servers = {_toml([fhir_server.base_url])}\n"
        f"[fhir]\nbase_url = {_toml(fhir_server.base_url)}\n"
        "[ehr_auth]\n"
        "[[ehr_auth.issuers]]\n"
        f"iss = {_toml(ISS)}\n"
        f"jwks = {_toml(public_jwks(ehr_key))}\n"
        "[review_page]\n"
        f"users_file = {_toml(str(users_file(tmp_path, {'dr.cds': DR})))}\n"
        f"[referral]\nips_service = {_toml(IPS_SERVICE)}\n"
    )
    return path


class Service:
    """One `ips-screen serve` process (with its workers), stopped by `stop`."""

    def __init__(self, config: Path, *, workers: int = 1) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = config.with_name(f"serve-{self.port}.log")
        argv = [str(IPS_SCREEN), "serve", "--config", str(config), "--port", str(self.port)]
        env = {**os.environ, "IPS_SCREEN_SESSION_SECRET": SECRET}
        env.pop("IPS_SCREEN_SERVE_CONFIG", None)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*argv, "--workers", str(workers)] if workers > 1 else argv,
                env=env,
                stdout=log,
                stderr=log,
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        waited = 0.0
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                self.process.wait(timeout=0.25)  # a pause that notices the process ending
            except subprocess.TimeoutExpired:
                waited += 0.25
            else:
                pytest.fail(f"ips-screen serve stopped: {self.log.read_text()[-2000:]}")
            if waited > START_TIMEOUT:
                self.stop()
                pytest.fail(f"ips-screen serve did not start: {self.log.read_text()[-2000:]}")

    def now(self) -> int:
        """The service's clock, from its Date header."""
        response = httpx.get(f"{self.base}/healthz", timeout=10)
        return int(parsedate_to_datetime(response.headers["date"]).timestamp())

    def post(self, path: str, body: dict, token: str) -> httpx.Response:
        """On a new connection (with several workers, any of them may answer)."""
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.post(self.base + path, json=body, headers=headers, timeout=30)

    def client(self, cookie: str | None = None) -> httpx.Client:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def start(config_file: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def make(workers: int = 1) -> Service:
        service = Service(config_file, workers=workers)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


def mint(key: rsa.RSAPrivateKey, now: int, path: str = SERVICE) -> str:
    claims = {
        "iss": ISS,
        "sub": "ehr-client",
        "aud": PUBLIC + path,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": KID})


def show_card(service: Service, key, fhir_server: FhirTestServer, pid: str) -> dict:
    body = hook_request(pid, fhir_server=fhir_server.base_url, access_token="ehr-user-token")
    response = service.post(SERVICE, body, mint(key, service.now()))
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    return card


def sign_in(service: Service) -> str:
    """Sign in as dr.cds; the session cookie's value."""
    with service.client() as client:
        form = client.get("/review/login")
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        data = {"username": "dr.cds", "password": PASSWORD, "csrf_token": token}
        response = client.post("/review/login", data=data)
        assert response.status_code == 303, response.text
        return response.cookies[COOKIE]


def signed_in(service: Service, cookie: str) -> bool:
    with service.client(cookie) as client:
        response = client.get("/review/login")
    assert response.status_code in (200, 303)
    return response.status_code == 303


def log_out(service: Service, cookie: str) -> None:
    with service.client(cookie) as client:
        page = client.get("/review/task/no-such-task")  # a signed-in page with the logout form
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        assert client.post("/review/logout", data={"csrf_token": token}).status_code == 303


def test_two_processes_on_one_state_dir_share_tokens_cards_and_sessions(
    start, ehr_key, fhir_server: FhirTestServer, fhir_client: FhirClient
):
    """Two separate `ips-screen serve` processes (ports A and B) with one state_dir: each call is
    aimed at one of them."""
    a, b = start(), start()

    token = mint(ehr_key, a.now())
    body = hook_request("no-such-patient", {"patient": None})
    assert a.post(SERVICE, body, token).status_code != 401
    assert b.post(SERVICE, body, token).status_code == 401  # replayed at the other process

    proposed = load_proposed_patient(fhir_client, "wk", now=FROZEN_NOW)
    card = show_card(a, ehr_key, fhir_server, proposed.pid)
    answer = b.post(FEEDBACK, feedback_item(card, "accepted"), mint(ehr_key, b.now(), FEEDBACK))
    assert answer.status_code == 200, answer.text
    assert fhir_client.read("Task", proposed.task_id)[0]["status"] == "completed"

    cookie = sign_in(a)
    assert signed_in(b, cookie)
    log_out(b, cookie)
    assert not signed_in(a, cookie)  # logged out at B: the saved cookie is worthless at A too

    cookie = sign_in(a)
    a.stop()
    restarted = start()
    assert signed_in(restarted, cookie)  # a restart keeps a valid session


def test_serve_with_two_workers_shares_the_replay_cache_and_the_cards(
    start, ehr_key, fhir_server: FhirTestServer, fhir_client: FhirClient
):
    """One `ips-screen serve --workers 2`: every call on a new connection, any worker answers."""
    service = start(workers=2)
    token = mint(ehr_key, service.now())
    body = hook_request("no-such-patient", {"patient": None})
    assert service.post(SERVICE, body, token).status_code != 401
    for _ in range(8):
        assert service.post(SERVICE, body, token).status_code == 401

    for _ in range(3):
        proposed = load_proposed_patient(fhir_client, "wk2", now=FROZEN_NOW)
        card = show_card(service, ehr_key, fhir_server, proposed.pid)
        feedback = feedback_item(card, "accepted")
        answer = service.post(FEEDBACK, feedback, mint(ehr_key, service.now(), FEEDBACK))
        assert answer.status_code == 200, answer.text
        assert fhir_client.read("Task", proposed.task_id)[0]["status"] == "completed"
