"""The EHR side of `serve.toml`: `ehr_fhir_servers` is required outside loopback development, the
fhirServer read limits are settings, and the public CDS Hooks sandbox is trusted only with the
loud `demo_trust_public_sandbox = true`, which turns every write off and says so at start-up.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from ips_screen.errors import ConfigError
from ips_screen.service.config import load_config, parse_config
from tests.support.cds import (
    call,
    feedback_item,
    fixture_resources,
    hook_request,
    prefetch_of,
    send_feedback,
    with_pending_proposal,
)
from tests.support.fake_fhir import FakeFhir

SANDBOX = {
    "iss": "https://sandbox.cds-hooks.org",
    "jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
}
BASE_TOML = """\
public_base_url = "{public}"
state_dir = "{state}"
{servers}
[fhir]
base_url = "https://fhir.practice.example/R4"

[[ehr_auth.issuers]]
iss = "https://ehr.practice.example"
jwks_url = "https://ehr.practice.example/jwks.json"
"""


def write(tmp_path: Path, public: str, servers: str = "") -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(BASE_TOML.format(public=public, servers=servers, state=tmp_path / "state"))
    return path


def test_ehr_fhir_servers_is_required_unless_loopback(tmp_path: Path):
    path = write(tmp_path, "https://ips.practice.example")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "ehr_fhir_servers" in str(info.value)
    listed = 'ehr_fhir_servers = ["https://ehr.practice.example/fhir"]'
    assert load_config(write(tmp_path, "https://ips.practice.example", listed)).ehr_fhir_servers
    assert load_config(write(tmp_path, "http://127.0.0.1:8080")).ehr_fhir_servers == []


def test_read_limits_are_settings(tmp_path: Path):
    servers = (
        'ehr_fhir_servers = ["https://ehr.practice.example/fhir/"]\n'
        "ehr_fhir_deadline_seconds = 2.5\nehr_fhir_max_bytes = 65536"
    )
    limits = load_config(write(tmp_path, "https://ips.practice.example", servers)).ehr_read_limits
    assert limits.allowed_servers == ("https://ehr.practice.example/fhir",)
    assert (limits.deadline_seconds, limits.max_bytes) == (2.5, 65536)
    for bad in ("ehr_fhir_deadline_seconds = 0", "ehr_fhir_max_bytes = 10"):
        path = write(tmp_path, "http://127.0.0.1:8080", bad)
        with pytest.raises(ConfigError, match=bad.split(" ")[0]):
            load_config(path)


def sandbox_config(**extra: Any) -> dict[str, Any]:
    return {
        "public_base_url": "https://ips.practice.example",
        "state_dir": "/var/lib/ips-screen/serve",  # validated, not created, by parse_config
        "ehr_fhir_servers": ["https://ehr.practice.example/fhir"],
        "fhir": {"base_url": "https://fhir.practice.example/R4"},
        "ehr_auth": {"issuers": [copy.deepcopy(SANDBOX)]},
        **extra,
    }


@pytest.mark.parametrize(
    "issuer",
    [
        SANDBOX,
        {"iss": "https://demo.example", "jku_allowlist": SANDBOX["jku_allowlist"]},
        {"iss": "https://sandbox.cds-hooks.org", "jwks_url": "https://keys.example/jwks.json"},
    ],
)
def test_the_public_sandbox_is_trusted_only_with_the_demo_setting(issuer: dict[str, Any]):
    data = sandbox_config()
    data["ehr_auth"]["issuers"] = [issuer]
    with pytest.raises(ConfigError, match="demo_trust_public_sandbox"):
        parse_config(data)
    data["demo_trust_public_sandbox"] = True
    assert parse_config(data).writes_enabled is False


def test_demo_setting_turns_every_write_off_and_warns_at_start_up(
    make_client,
    ehr_key,
    caplog,
):
    resources = with_pending_proposal(fixture_resources("01"))
    fake = FakeFhir(resources)
    with caplog.at_level(logging.WARNING, logger="ips_screen.service"):
        client, _ = make_client(fake, demo_trust_public_sandbox=True)
    assert any("every write" in r.getMessage() and "OFF" in r.getMessage() for r in caplog.records)
    before = copy.deepcopy(fake.store)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    for item in (feedback_item(card, "accepted"), feedback_item(card, "overridden", "not-now")):
        assert send_feedback(client, ehr_key, item) != 200
    assert fake.store == before and fake.transactions == 0  # nothing written


def test_writes_stay_on_without_the_demo_setting(make_client, ehr_key):
    resources = with_pending_proposal(fixture_resources("01"))
    fake = FakeFhir(resources)
    client, _ = make_client(fake)
    (card,) = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources))).json()["cards"]
    assert send_feedback(client, ehr_key, feedback_item(card, "accepted")) == 200
    assert fake.transactions == 1
