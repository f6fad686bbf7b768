"""Fault injection for reading a FHIR server (ips_screen.sources.fhir_rest) with `responses`, and
the command-line options that build its client (ips_screen.cli.server_args).

A small fake server answers searches from memory with offset paging; a fault planned for one page
of one type is served (once per planned answer) before the real page. No test sleeps.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import responses

from ips_screen.cli import server_args
from ips_screen.cli.main import main
from ips_screen.errors import ConfigError, ServerError, UserError
from ips_screen.fhir import auth
from ips_screen.fhir.client import FhirClient
from ips_screen.pipeline import decide_all
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import collect_resources, fhir_rest
from ips_screen.sources.fhir_rest import read_server
from ips_screen.sources.population import Population
from tests.support.paging_server import (
    AS_OF_TEXT,
    BASE,
    DATA,
    FHIR_JSON,
    OTHER,
    FakeServer,
    records,
)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(BASE)}/[A-Z][A-Za-z]+"), server)
        server.mock = mock  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def client(delays: list[float]) -> Iterator[FhirClient]:
    with FhirClient(BASE, sleep=delays.append, clock=lambda: 0.0) as c:
        yield c


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset()


def decided(ruleset: CompiledRuleset, population: Population) -> list[dict]:
    as_of = date.fromisoformat(AS_OF_TEXT)
    return [d.to_dict() for d in decide_all(ruleset, population.patients.values(), as_of)]


def page_calls(fake: FakeServer, rtype: str) -> list[dict[str, str]]:
    calls = fake.mock.calls  # type: ignore[attr-defined]
    return [
        {k: v[-1] for k, v in parse_qs(urlsplit(c.request.url).query).items()}
        for c in calls
        if urlsplit(c.request.url).path.endswith(f"/{rtype}")
    ]


def test_503_then_success_mid_paging_gives_complete_data(fake, client, delays, ruleset):
    fake.faults[("Observation", 2)] = [(503, {"Retry-After": "3"}, b"")]
    population = read_server(client, ruleset, page_size=2)
    assert decided(ruleset, population) == decided(ruleset, collect_resources(DATA, ruleset))
    assert population.report.by_type == {"Patient": 5, "Condition": 5, "Observation": 5}
    assert delays == [3.0]
    offsets = [c.get("_offset", "0") for c in page_calls(fake, "Observation")]
    assert offsets == ["0", "2", "2", "4"]


def test_malformed_page_is_a_one_line_error(fake, client, ruleset):
    fake.faults[("Condition", 2)] = [(200, {"Content-Type": FHIR_JSON}, b'{"resourceType": "B')]
    with pytest.raises(ServerError) as caught:
        read_server(client, ruleset, page_size=2)
    message = str(caught.value)
    assert message.startswith("GET /r4/Condition (page 2): malformed JSON")
    assert "\n" not in message


def test_page_that_is_not_a_bundle(fake, client, ruleset):
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    fake.faults[("Patient", 1)] = [(200, {"Content-Type": FHIR_JSON}, orjson.dumps(outcome))]
    with pytest.raises(ServerError, match=r"^GET /r4/Patient: expected a Bundle"):
        read_server(client, ruleset)


def test_entry_that_is_not_a_resource_is_an_error_or_skipped(fake, client, ruleset):
    bad = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {"id": "x"}}]}
    answer = (200, {"Content-Type": FHIR_JSON}, orjson.dumps(bad))
    fake.faults[("Condition", 1)] = [answer, answer]
    with pytest.raises(ServerError, match=r"^GET /r4/Condition \(page 1\): entry 1: not a FHIR"):
        read_server(client, ruleset, page_size=10)
    population = read_server(client, ruleset, page_size=10, skip_invalid=True)
    assert population.report.skipped_count == 1
    assert len(population) == 5


def test_next_link_to_another_host_is_refused(fake, client, ruleset):
    elsewhere = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": f"{OTHER}/Observation?_offset=2"}],
    }
    fake.faults[("Observation", 1)] = [(200, {"Content-Type": FHIR_JSON}, orjson.dumps(elsewhere))]
    with pytest.raises(ServerError, match="refused to follow a next-page link to another server"):
        read_server(client, ruleset, page_size=2)
    assert all(c.request.url.startswith(BASE) for c in fake.mock.calls)


def test_http_error_with_outcome_is_one_line(fake, client, ruleset):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "no\nTask here"}],
    }
    fake.faults[("Task", 1)] = [(400, {"Content-Type": FHIR_JSON}, orjson.dumps(outcome))]
    with pytest.raises(ServerError) as caught:
        read_server(client, ruleset)
    assert str(caught.value) == (
        "HTTP 400 Bad Request from GET /r4/Task: error not-supported: no Task here"
    )


def test_given_patients_are_read_in_chunks_by_the_declared_parameter(
    fake, client, ruleset, monkeypatch
):
    statement = {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [{"resource": [{"type": "Task", "searchParam": [{"name": "subject"}]}]}],
    }
    fake.mock.get(f"{BASE}/metadata", body=orjson.dumps(statement), content_type=FHIR_JSON)
    monkeypatch.setattr(fhir_rest, "PATIENT_CHUNK", 2)
    population = read_server(client, ruleset, patients=["e", "Patient/a", "c"])
    assert sorted(population.patients) == ["a", "c", "e"]
    assert [c["_id"] for c in page_calls(fake, "Patient")] == ["e,a", "c"]
    by_patient = ["Patient/e,Patient/a", "Patient/c"]
    assert [c["patient"] for c in page_calls(fake, "Condition")] == by_patient
    assert [c["subject"] for c in page_calls(fake, "Task")] == by_patient


def test_records_of_patients_not_asked_for_are_dropped(client, ruleset, caplog):
    caplog.set_level(logging.WARNING, logger="ips_screen.sources")
    server = FakeServer(ignore_patient=True)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(BASE)}/[A-Z][A-Za-z]+"), server)
        population = read_server(client, ruleset, patients=["b"])
    expected = collect_resources(records("b"), ruleset)
    assert decided(ruleset, population) == decided(ruleset, expected)
    assert population.orphans == {}
    assert "returned 8 records of patients that were not asked for" in caplog.text


def test_total_that_differs_from_what_was_sent_is_logged(fake, client, ruleset, caplog):
    short = {"resourceType": "Bundle", "type": "searchset", "total": 7, "entry": []}
    fake.faults[("Procedure", 1)] = [(200, {"Content-Type": FHIR_JSON}, orjson.dumps(short))]
    caplog.set_level(logging.WARNING, logger="ips_screen.sources")
    read_server(client, ruleset)
    assert "GET /r4/Procedure: the server announced 7 matches but sent 0" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patients": ["a,b"]}, "not a FHIR patient id: 'a,b'"),
        ({"patients": []}, "no patient ids given"),
        ({"page_size": 0}, "the page size must be 1 or more"),
    ],
)
def test_bad_arguments(client, ruleset, kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        read_server(client, ruleset, **kwargs)


# -- command-line options -------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    server_args.add_server_args(parser)
    return parser.parse_args(argv)


def test_option_defaults_match_the_auth_module():
    assert server_args.DEFAULT_TOKEN_ENV == auth.DEFAULT_TOKEN_ENV
    assert server_args.DEFAULT_SCOPE == auth.DEFAULT_SCOPE


def test_bearer_token_from_the_named_variable():
    args = parse("--auth", "bearer", "--token-env", "MY_TOKEN")
    with server_args.client_from_args(args, {"MY_TOKEN": "tok"}, BASE) as client:
        assert client.auth.authorization() == "Bearer tok"
    with pytest.raises(ConfigError, match="IPS_SCREEN_FHIR_TOKEN is not set"):
        server_args.client_from_args(parse("--auth", "bearer"), {}, BASE)


@pytest.mark.parametrize(
    ("argv", "url", "message"),
    [
        (["--auth", "smart", "--kid", "k"], BASE, "--auth smart needs --client-id, --private-key"),
        (["--client-id", "x"], BASE, "--client-id only applies with --auth smart"),
        (["--auth", "smart", "--token-env", "X"], BASE, "--token-env only applies with --auth"),
        (["--auth", "bearer"], "http://fhir.example.org/r4", "without https"),
        ([], "ftp://fhir.example.org/r4", "starts with http:// or https://"),
    ],
)
def test_bad_server_options(argv, url, message):
    with pytest.raises(UserError, match=re.escape(message)):
        server_args.client_from_args(parse(*argv), {"IPS_SCREEN_FHIR_TOKEN": "t"}, url)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["screen", BASE, "data.json"], "not a FHIR server and files"),
        (["screen", BASE, OTHER], "not several FHIR servers"),
        (["screen", "data.json", "--page-size", "10"], "--page-size only applies when"),
        (["explain", "data.json", "--patient", "a", "--auth", "bearer"], "--auth only applies"),
    ],
)
def test_cli_refuses_mixed_sources_and_stray_options(argv, message, tmp_path: Path, capsys):
    out = ["--out", str(tmp_path)] if argv[0] == "screen" else []
    assert main([*argv, *out], environ={}) == 2
    assert message in capsys.readouterr().err


def test_cli_screen_with_bearer_token(fake, tmp_path: Path, capsys):
    argv = ["-q", "screen", BASE, "--as-of", AS_OF_TEXT, "--out", str(tmp_path)]
    assert main([*argv, "--auth", "bearer"], environ={"IPS_SCREEN_FHIR_TOKEN": "s3cret"}) == 0
    assert "Screened 5 patients" in capsys.readouterr().out
    headers = [c.request.headers for c in fake.mock.calls]
    assert {h["Authorization"] for h in headers} == {"Bearer s3cret"}
    assert {h["Prefer"] for h in headers} == {"handling=strict"}
    lines = (tmp_path / "decisions.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["outcome"] for line in lines] == ["propose"] * 5


def test_smart_options_build_smart_backend_auth(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "key.pem").write_bytes(pem)
    argv = ["--auth", "smart", "--client-id", "ips", "--private-key", str(tmp_path / "key.pem")]
    args = parse(*argv, "--kid", "k1", "--token-url", "https://auth.example.org/token")
    with server_args.client_from_args(args, {}, BASE) as client:
        assert isinstance(client.auth, auth.SmartBackendAuth)
        assert (client.auth.client_id, client.auth.kid) == ("ips", "k1")
        assert client.auth.scope == "system/*.rs"
        assert client.auth.algorithm == "ES384"
