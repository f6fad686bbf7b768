"""Fault injection for the Bulk Data export (`ips_screen.fhir.bulk`) with `responses`.

No test sleeps for the code under test: `FakeTime.sleep` records the delays and moves the fake
monotonic clock; the client's wall clock is fixed at NOW (for Retry-After dates).
"""

from __future__ import annotations

import gzip
import io
import logging
import threading
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
import responses

from ips_screen.errors import ConfigError, ServerError
from ips_screen.fhir.bulk import (
    STATE_FILE,
    ExportDamaged,
    ExportRequest,
    ExportUnsupported,
    supports_export,
)
from ips_screen.fhir.bulk_filter import matches, parse_type_filters
from ips_screen.fhir.client import FhirClient, RetryPolicy
from tests.support import bulk_responses
from tests.support.bulk_responses import (
    BASE,
    KICKOFF,
    NOW,
    OTHER,
    SECRET_NAME,
    STATUS,
    calls,
    condition,
    done,
    kickoff,
    manifest,
    ndjson,
    outcome,
    patient,
    run,
    simple_export,
)

# the fake exporter's fixtures (`mock` is tests/fault/conftest.py's)
fake, auth, client = bulk_responses.fake, bulk_responses.auth, bulk_responses.client

# -- happy path ----------------------------------------------------------------------------------


def test_happy_path(mock, client, fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    mock.get(KICKOFF, status=202, headers={"Content-Location": "bulkstatus/job-1"})  # relative
    mock.get(STATUS, status=202, headers={"X-Progress": "50% done", "Retry-After": "3"})
    body = manifest(
        ("Patient", f"{BASE}/files/p.ndjson", 2),
        ("Condition", f"{BASE}/files/c.ndjson", 1),
        error=[{"type": "OperationOutcome", "url": f"{BASE}/files/e.ndjson"}],
    )
    done(mock, body)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1"), patient("p2")))
    mock.get(f"{BASE}/files/c.ndjson", body=ndjson(condition("c1")))
    mock.get(f"{BASE}/files/e.ndjson", body=ndjson(outcome("Observation/o9 could not be read")))
    events: list[tuple[str, dict]] = []
    request = ExportRequest(
        types=("Patient", "Condition"),
        since="2029-12-31T00:00:00Z",
        type_filters=("Condition?code=http://snomed.info/sct|82423001,x",),
    )

    result = run(client, fake, tmp_path, request, progress=lambda e, d: events.append((e, d)))

    kick = mock.calls[0].request
    assert kick.headers["Accept"] == "application/fhir+json"
    assert kick.headers["Prefer"] == "respond-async"
    query = parse_qs(urlsplit(kick.url).query)
    assert query == {
        "_outputFormat": ["application/fhir+ndjson"],
        "_type": ["Patient,Condition"],
        "_since": ["2029-12-31T00:00:00Z"],
        "_typeFilter": ["Condition?code=http://snomed.info/sct|82423001%2Cx"],
    }
    assert fake.delays == [3.0]
    assert result.transaction_time == "2030-01-02T03:04:05.678Z"
    assert result.resumed is False
    assert [(t, p.name) for t, p in result.files] == [
        ("Patient", "output-0001-Patient.ndjson"),
        ("Condition", "output-0002-Condition.ndjson"),
    ]
    assert all(p.parent == tmp_path / "files" for _, p in result.files)
    lines = result.files[0][1].read_bytes().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == ["p1", "p2"]
    assert result.deleted == []
    assert result.errors == ["error processing: Observation/o9 could not be read"]
    assert result.manifest == body
    assert not (tmp_path / STATE_FILE).exists()
    assert not list((tmp_path / "files").glob("*.part"))
    assert len(calls(mock, "DELETE", STATUS)) == 1
    names = [e for e, _ in events]
    assert names[:3] == ["kickoff", "poll", "manifest"]
    assert names.count("file") == 3 and names[-1] == "complete"
    assert events[1][1] == {"status": 202, "progress": "50% done", "wait": 3.0}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_NAME not in logged and "tok-" not in logged and "p1" not in logged


def test_state_file_is_written_right_after_kick_off(mock, client, fake, tmp_path):
    request = ExportRequest(types=("Patient",))
    seen: list[dict] = []

    def status(req: requests.PreparedRequest) -> tuple[int, dict, bytes]:
        seen.append(orjson.loads((tmp_path / STATE_FILE).read_bytes()))
        return 200, {}, orjson.dumps(manifest())

    kickoff(mock)
    mock.add_callback(responses.GET, STATUS, callback=status)
    mock.delete(STATUS, status=202)
    run(client, fake, tmp_path, request)
    assert seen[0]["key"] == request.key()
    assert seen[0]["status_url"] == STATUS
    assert seen[0]["base_url"] == BASE
    assert seen[0]["kicked_off_at"] == "2030-03-17T17:46:40+00:00"
    assert not (tmp_path / STATE_FILE).exists()


# -- polling --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("5", 5.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        ("3600", 120.0),  # capped
        (formatdate(NOW + 86400, usegmt=True), 120.0),
        ("0", 1.0),  # never a busy loop
    ],
)
def test_poll_honours_retry_after(mock, client, fake, tmp_path, retry_after, expected):
    kickoff(mock)
    mock.get(STATUS, status=202, headers={"Retry-After": retry_after})
    done(mock, manifest())
    run(client, fake, tmp_path)
    assert fake.delays == [expected]


def test_poll_backoff_without_retry_after(mock, client, fake, tmp_path):
    kickoff(mock)
    for _ in range(8):
        mock.get(STATUS, status=202)
    done(mock, manifest())
    run(client, fake, tmp_path)
    assert fake.delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_429_slows_polling_down(mock, client, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, status=202, headers={"Retry-After": "2"})
    mock.get(STATUS, status=429)
    mock.get(STATUS, status=202, headers={"Retry-After": "2"})
    mock.get(STATUS, status=429, headers={"Retry-After": "30"})
    mock.get(STATUS, status=202, headers={"Retry-After": "2"})
    done(mock, manifest())
    run(client, fake, tmp_path)
    assert fake.delays == [2.0, 4.0, 4.0, 30.0, 30.0]


def test_503_during_poll_then_success(mock, client, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, status=503)
    mock.get(STATUS, status=503, json=outcome("busy", "transient"), headers={"Retry-After": "7"})
    mock.get(STATUS, body=requests.ConnectionError("reset"))
    done(mock, manifest())
    result = run(client, fake, tmp_path)
    assert fake.delays == [1.0, 7.0, 4.0]
    assert result.transaction_time


def test_repeated_5xx_gives_up_and_keeps_the_state_for_resume(mock, client, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, status=502)
    with pytest.raises(ServerError, match=r"HTTP 502 .*gave up after 5 attempts"):
        run(client, fake, tmp_path)
    assert (tmp_path / STATE_FILE).exists()


def test_failed_job_outcome_is_a_server_error_and_drops_the_state(mock, client, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, status=500, json=outcome("export ran out of disk", "exception"))
    mock.get(STATUS, status=400, json=outcome("the export failed: bad _typeFilter", "invalid"))
    with pytest.raises(ServerError, match=r"HTTP 400 .*bad _typeFilter"):
        run(client, fake, tmp_path)
    assert not (tmp_path / STATE_FILE).exists()
    assert not calls(mock, "GET", f"{BASE}/files")


def test_poll_max_wait_names_the_status_url_and_keeps_the_state(mock, client, fake, tmp_path):
    kickoff(mock, status_url=f"{STATUS}?sig=secret")
    mock.get(STATUS, status=202, headers={"Retry-After": "10"})
    with pytest.raises(ServerError, match="did not finish within 25 s") as caught:
        run(client, fake, tmp_path, poll_max_wait=25)
    assert STATUS in str(caught.value) and "secret" not in str(caught.value)
    assert fake.delays == [10.0, 10.0, 5.0]
    assert (tmp_path / STATE_FILE).exists()


# -- downloads ------------------------------------------------------------------------------------


def test_timeout_during_download_then_retry(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", body=requests.exceptions.ReadTimeout("slow"))
    mock.get(f"{BASE}/files/p.ndjson", status=503, headers={"Retry-After": "9"})
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    result = run(client, fake, tmp_path)
    assert fake.delays == [1.0, 9.0]
    assert len(result.files[0][1].read_bytes().splitlines()) == 1


class _BreaksOff(io.RawIOBase):
    """A response body that sends some bytes, then the connection resets."""

    def __init__(self, first: bytes) -> None:
        self.first: bytes | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.first is None:
            raise ConnectionResetError("connection reset by peer")
        data, self.first = self.first, None
        buffer[: len(data)] = data
        return len(data)


def test_connection_broken_mid_file_is_retried_from_the_start(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))
    broken = io.BufferedReader(_BreaksOff(orjson.dumps(patient("p1")) + b'\n{"resour'))
    mock.get(f"{BASE}/files/p.ndjson", body=broken)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1"), patient("p2")))
    result = run(client, fake, tmp_path)
    assert fake.delays == [1.0]
    assert len(result.files[0][1].read_bytes().splitlines()) == 2


def test_download_gives_up_after_max_attempts(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", status=500)
    with pytest.raises(ServerError, match=r"HTTP 500 from GET /r4/files/p.ndjson.*gave up after 5"):
        run(client, fake, tmp_path)
    assert (tmp_path / STATE_FILE).exists()
    assert not list((tmp_path / "files").iterdir())


def test_gzip_encoded_file_is_decoded(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))
    body = gzip.compress(ndjson(patient("p1"), patient("p2")))
    mock.get(f"{BASE}/files/p.ndjson", body=body, headers={"Content-Encoding": "gzip"})
    result = run(client, fake, tmp_path)
    assert len(result.files[0][1].read_bytes().splitlines()) == 2


def test_corrupt_gzip_is_a_server_error(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", body=b"not gzip", headers={"Content-Encoding": "gzip"})
    with pytest.raises(ServerError, match="the download failed"):
        run(client, fake, tmp_path)
    assert not list((tmp_path / "files").iterdir())


def test_malformed_ndjson_line_names_file_and_line(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 3)))
    body = ndjson(patient("p1")) + b"\n" + b'{"resourceType": "Patient", \n'
    mock.get(f"{BASE}/files/p.ndjson", body=body)
    with pytest.raises(ServerError) as caught:
        run(client, fake, tmp_path)
    message = str(caught.value)
    assert "output-0001-Patient.ndjson:3 " in message
    assert "/r4/files/p.ndjson" in message and "not valid JSON" in message
    assert SECRET_NAME not in message
    assert not list((tmp_path / "files").iterdir())
    assert fake.delays == []  # a bad file is not retried
    # the job's files are bad: the next run starts a new job instead of resuming this one
    assert not (tmp_path / STATE_FILE).exists()
    assert len(calls(mock, "DELETE", STATUS)) == 1


def test_wrong_resource_type_in_a_file(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1"), condition("c1")))
    with pytest.raises(
        ServerError, match=r"Patient.ndjson:2 .*expected resourceType Patient, got 'Condition'"
    ):
        run(client, fake, tmp_path)


def test_a_line_without_resource_type(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", body=b"[1, 2]\n")
    with pytest.raises(ServerError, match=r"Patient.ndjson:1 .*got no resourceType"):
        run(client, fake, tmp_path)


def test_count_mismatch_is_a_damaged_export(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 5)))
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")) + b"\n\n")
    with pytest.raises(ExportDamaged, match="the manifest's count is 5, the file holds 1"):
        run(client, fake, tmp_path)
    assert not list((tmp_path / "files").iterdir())
    assert not (tmp_path / STATE_FILE).exists()  # a bad job is not resumed
    assert len(calls(mock, "DELETE", STATUS)) == 1


def test_error_files_are_collected_and_do_not_fail(mock, client, fake, tmp_path):
    kickoff(mock)
    errors = [{"type": "OperationOutcome", "url": f"{BASE}/files/e{n}.ndjson"} for n in (1, 2)]
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1), error=errors))
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    mock.get(f"{BASE}/files/e1.ndjson", body=ndjson(outcome("a"), outcome("b", "not-found")))
    mock.get(f"{BASE}/files/e2.ndjson", body=ndjson(outcome("c")))
    result = run(client, fake, tmp_path)
    assert result.errors == ["error processing: a", "error not-found: b", "error processing: c"]
    assert len(result.files) == 1


def test_outcomes_that_only_inform_are_notes_not_errors(mock, client, fake, tmp_path):
    kickoff(mock)
    errors = [{"type": "OperationOutcome", "url": f"{BASE}/files/e.ndjson"}]
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1), error=errors))
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    info = {"severity": "information", "code": "informational", "diagnostics": "no Task"}
    mixed = {"severity": "warning", "code": "incomplete", "diagnostics": "some cut"}
    outcomes = [
        {"resourceType": "OperationOutcome", "issue": [info, info]},
        {"resourceType": "OperationOutcome", "issue": [info, mixed]},  # not only information
        {"resourceType": "OperationOutcome", "issue": []},  # says nothing: an error, as before
    ]
    mock.get(f"{BASE}/files/e.ndjson", body=ndjson(*outcomes))
    result = run(client, fake, tmp_path)
    assert result.notes == ["; ".join(["information informational: no Task"] * 2)]
    assert result.errors == [
        "information informational: no Task; warning incomplete: some cut",
        "OperationOutcome without issues",
    ]


def test_an_error_file_must_hold_operation_outcomes(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(error=[{"type": "OperationOutcome", "url": f"{BASE}/files/e.ndjson"}]))
    mock.get(f"{BASE}/files/e.ndjson", body=ndjson(patient("p1")))
    with pytest.raises(ServerError, match="expected resourceType OperationOutcome, got 'Patient'"):
        run(client, fake, tmp_path)


def test_deleted_files_are_downloaded(mock, client, fake, tmp_path):
    kickoff(mock)
    deleted_bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Condition/c9"}}],
    }
    body = manifest(deleted=[{"type": "Bundle", "url": f"{BASE}/files/d.ndjson", "count": 1}])
    done(mock, body)
    mock.get(f"{BASE}/files/d.ndjson", body=ndjson(deleted_bundle))
    result = run(client, fake, tmp_path, ExportRequest(since="2030-01-01T00:00:00+01:00"))
    assert result.files == []
    assert [p.name for p in result.deleted] == ["deleted-0001-Bundle.ndjson"]
    assert orjson.loads(result.deleted[0].read_bytes())["entry"][0]["request"]["method"] == "DELETE"


def test_output_of_a_type_not_asked_for_is_skipped(mock, client, fake, tmp_path):
    kickoff(mock)
    body = manifest(
        ("Patient", f"{BASE}/files/p.ndjson", 1), ("Observation", f"{BASE}/files/o.ndjson", 1)
    )
    done(mock, body)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    result = run(client, fake, tmp_path, ExportRequest(types=("Patient",)))
    assert [t for t, _ in result.files] == ["Patient"]
    assert not calls(mock, "GET", f"{BASE}/files/o.ndjson")


def test_type_filter_is_applied_again_on_the_client(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Condition", f"{BASE}/files/c.ndjson", 3)))
    body = ndjson(condition("c1", "82423001"), condition("c2", "38341003"), condition("c3", "1"))
    mock.get(f"{BASE}/files/c.ndjson", body=body)
    request = ExportRequest(
        types=("Condition",), type_filters=("Condition?code=http://snomed.info/sct|82423001,1",)
    )
    result = run(client, fake, tmp_path, request)
    kept = [orjson.loads(line)["id"] for line in result.files[0][1].read_bytes().splitlines()]
    assert kept == ["c1", "c3"]


def test_type_filter_matching_rules():
    cond = condition("c1", "82423001") | {"clinicalStatus": {"coding": [{"code": "active"}]}}
    check = parse_type_filters
    assert matches(cond, check(["Condition?code=82423001"])["Condition"])
    assert matches(cond, check(["Condition?code=http://snomed.info/sct|"])["Condition"])
    assert not matches(cond, check(["Condition?code=|82423001"])["Condition"])
    assert not matches(cond, check(["Condition?code=x&clinical-status=active"])["Condition"])
    assert matches(
        cond, check(["Condition?code=x", "Condition?clinical-status=active"])["Condition"]
    )
    # parameters the client cannot evaluate are left to the server
    assert matches(cond, check(["Condition?onset-date=ge2020"])["Condition"])
    assert matches(cond, check(["Condition?code:not=82423001"])["Condition"])


# -- where the token may go ------------------------------------------------------------------------


def test_requires_access_token_with_files_on_another_host_is_refused(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{OTHER}/p.ndjson", 1)))
    mock.get(f"{OTHER}/p.ndjson", body=ndjson(patient("p1")))
    with pytest.raises(ServerError, match="refusing to send the token") as caught:
        run(client, fake, tmp_path)
    assert "files.example.net" in str(caught.value)
    assert not calls(mock, "GET", OTHER)
    assert not (tmp_path / STATE_FILE).exists()


def test_no_token_to_another_host_when_not_required(mock, client, fake, tmp_path):
    kickoff(mock)
    body = manifest(
        ("Patient", f"{OTHER}/p.ndjson?sig=abc", 1),
        ("Condition", f"{BASE}/files/c.ndjson", 1),
        requiresAccessToken=False,
    )
    done(mock, body)
    mock.get(f"{OTHER}/p.ndjson", body=ndjson(patient("p1")))
    mock.get(f"{BASE}/files/c.ndjson", body=ndjson(condition("c1")))
    run(client, fake, tmp_path)
    downloads = calls(mock, "GET", OTHER) + calls(mock, "GET", f"{BASE}/files")
    assert len(downloads) == 2
    assert all("Authorization" not in c.request.headers for c in downloads)
    assert "Authorization" in mock.calls[0].request.headers  # the kick-off carried it


def test_redirect_to_another_host_does_not_carry_authorization(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", status=302, headers={"Location": f"{OTHER}/signed/p"})
    mock.get(f"{OTHER}/signed/p", body=ndjson(patient("p1")))
    run(client, fake, tmp_path)
    first = calls(mock, "GET", f"{BASE}/files")[0].request
    redirected = calls(mock, "GET", OTHER)[0].request
    assert first.headers["Authorization"].startswith("Bearer tok-")
    assert "Authorization" not in redirected.headers


def test_every_request_asks_the_auth_afresh(mock, client, auth, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, status=202, headers={"Retry-After": "1"})
    urls = [f"{BASE}/files/p{n}.ndjson" for n in range(3)]
    done(mock, manifest(*[("Patient", u, 1) for u in urls]))
    for n, url in enumerate(urls):
        mock.get(url, body=ndjson(patient(f"p{n}")))
    run(client, fake, tmp_path, max_parallel=1)
    tokens = [c.request.headers.get("Authorization") for c in mock.calls]
    assert len(tokens) == 7  # kick-off, 2 polls, 3 files, DELETE
    assert len(set(tokens)) == 7 and None not in tokens


def test_401_on_a_file_reauthenticates_once(mock, client, auth, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.get(f"{BASE}/files/p.ndjson", status=401)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    run(client, fake, tmp_path)
    assert auth.reauthenticated == 1
    assert fake.delays == []


# -- resume ---------------------------------------------------------------------------------------


def save_state(work: Path, request: ExportRequest, status_url: str = STATUS, base: str = BASE):
    state = {
        "key": request.key(),
        "base_url": base,
        "status_url": status_url,
        "kicked_off_at": "2030-01-01T00:00:00+00:00",
    }
    (work / STATE_FILE).write_bytes(orjson.dumps(state))


def test_resume_polls_the_saved_status_url_without_kick_off(mock, client, fake, tmp_path):
    request = ExportRequest(types=("Patient",))
    save_state(tmp_path, request)
    mock.get(STATUS, status=202)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    events: list[str] = []
    result = run(client, fake, tmp_path, request, progress=lambda e, d: events.append(e))
    assert result.resumed is True
    assert not calls(mock, "GET", KICKOFF)
    assert events[0] == "resume" and "kickoff" not in events
    assert not (tmp_path / STATE_FILE).exists()


def test_a_state_for_another_request_or_server_is_ignored(mock, client, fake, tmp_path):
    simple_export(mock)
    save_state(tmp_path, ExportRequest(types=("Observation",)), f"{BASE}/bulkstatus/old")
    result = run(client, fake, tmp_path, ExportRequest(types=("Patient",)))
    assert result.resumed is False
    assert len(calls(mock, "GET", KICKOFF)) == 1
    assert not calls(mock, "GET", f"{BASE}/bulkstatus/old")

    save_state(tmp_path, ExportRequest(), f"{BASE}/bulkstatus/old", base="https://x.example/r4")
    assert run(client, fake, tmp_path, ExportRequest()).resumed is False


def test_request_key_is_stable():
    a = ExportRequest(types=("Patient", "Condition"), since="2030-01-01T00:00:00Z")
    b = ExportRequest(types=("Condition", "Patient"), since="2030-01-01T00:00:00Z")
    assert a.key() == b.key() == ExportRequest(**a.__dict__).key()
    assert a.key() != ExportRequest(types=("Patient", "Condition")).key()
    assert ExportRequest().key() != ExportRequest(level="patient").key()


def test_a_vanished_saved_job_is_replaced_by_a_new_kick_off(mock, client, fake, tmp_path):
    save_state(tmp_path, ExportRequest(), f"{BASE}/bulkstatus/gone")
    mock.get(f"{BASE}/bulkstatus/gone", status=404, json=outcome("no such job", "not-found"))
    simple_export(mock)
    result = run(client, fake, tmp_path)
    assert result.resumed is False
    assert len(calls(mock, "GET", KICKOFF)) == 1


def test_an_unreadable_state_file_is_ignored(mock, client, fake, tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    simple_export(mock)
    assert run(client, fake, tmp_path).resumed is False


# -- clean-up and kick-off errors -----------------------------------------------------------------


def test_delete_404_is_ignored(mock, client, fake, tmp_path):
    kickoff(mock)
    mock.get(STATUS, json=manifest())
    mock.delete(STATUS, status=404)
    result = run(client, fake, tmp_path)
    assert result.transaction_time
    assert not (tmp_path / STATE_FILE).exists()


def test_delete_failure_is_logged_not_raised(mock, auth, fake, tmp_path, caplog):
    kickoff(mock)
    mock.get(STATUS, json=manifest())
    mock.delete(STATUS, status=500)
    with FhirClient(BASE, auth=auth, retry=RetryPolicy(max_attempts=2)) as client:
        run(client, fake, tmp_path)
    assert len(calls(mock, "DELETE", STATUS)) == 2
    assert "could not delete the export job" in caplog.text


@pytest.mark.parametrize("status", [404, 405, 501])
def test_kick_off_not_supported(mock, client, fake, tmp_path, status):
    mock.get(KICKOFF, status=status, json=outcome("unknown operation", "not-found"))
    with pytest.raises(ExportUnsupported, match=f"HTTP {status}"):
        run(client, fake, tmp_path)
    assert not (tmp_path / STATE_FILE).exists()


def test_kick_off_outcome_not_supported(mock, client, fake, tmp_path):
    mock.get(f"{BASE}/Patient/$export", status=400, json=outcome("no _typeFilter", "not-supported"))
    with pytest.raises(ExportUnsupported, match="no _typeFilter"):
        run(client, fake, tmp_path, ExportRequest(level="patient"))


def test_kick_off_other_errors_are_server_errors(mock, client, fake, tmp_path):
    mock.get(KICKOFF, status=400, json=outcome("_since is in the future", "invalid"))
    with pytest.raises(ServerError, match="_since is in the future") as caught:
        run(client, fake, tmp_path)
    assert not isinstance(caught.value, ExportUnsupported)


def test_missing_group_is_not_unsupported(mock, client, fake, tmp_path):
    mock.get(f"{BASE}/Group/g1/$export", status=404, json=outcome("Group/g1 not found"))
    mock.get(f"{BASE}/Group/g1", status=404)
    with pytest.raises(ServerError, match="Group/g1 does not exist") as caught:
        run(client, fake, tmp_path, ExportRequest(level="group", group_id="g1"))
    assert not isinstance(caught.value, ExportUnsupported)


def test_kick_off_429_is_retried(mock, client, fake, tmp_path):
    mock.get(KICKOFF, status=429, headers={"Retry-After": "4"})
    simple_export(mock)
    run(client, fake, tmp_path)
    assert fake.delays == [4.0]
    assert len(calls(mock, "GET", KICKOFF)) == 2


def test_kick_off_without_content_location(mock, client, fake, tmp_path):
    mock.get(KICKOFF, status=202)
    with pytest.raises(ServerError, match="without a Content-Location"):
        run(client, fake, tmp_path)


def test_request_validation():
    with pytest.raises(ConfigError):
        ExportRequest(level="group")
    with pytest.raises(ConfigError):
        ExportRequest(group_id="g1")
    with pytest.raises(ConfigError):
        ExportRequest(types=("patient",))
    with pytest.raises(ConfigError):
        ExportRequest(since="2030-01-01")
    with pytest.raises(ConfigError):
        ExportRequest(types=("Patient",), type_filters=("Condition?code=1",))
    with pytest.raises(ConfigError):
        ExportRequest(type_filters=("code=1",))


# -- parallel downloads ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_parallel", [1, 2, 3])
def test_max_parallel_is_respected(mock, client, fake, tmp_path, max_parallel):
    lock = threading.Lock()
    active = [0]
    peak = [0]

    def file_callback(req: requests.PreparedRequest) -> tuple[int, dict, bytes]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)  # the fake server is slow, so downloads overlap when allowed to
        with lock:
            active[0] -= 1
        return 200, {}, ndjson(patient(urlsplit(req.url).path.rsplit("/", 1)[-1]))

    kickoff(mock)
    urls = [f"{BASE}/files/p{n}" for n in range(8)]
    done(mock, manifest(*[("Patient", u, 1) for u in urls]))
    for url in urls:
        mock.add_callback(responses.GET, url, callback=file_callback)
    result = run(client, fake, tmp_path, max_parallel=max_parallel)
    assert peak[0] == max_parallel
    assert [p.name for _, p in result.files] == [
        f"output-{n:04d}-Patient.ndjson" for n in range(1, 9)
    ]


def test_a_failed_file_stops_the_others(mock, client, fake, tmp_path):
    kickoff(mock)
    urls = [f"{BASE}/files/p{n}" for n in range(6)]
    done(mock, manifest(*[("Patient", u, 1) for u in urls]))
    mock.get(urls[0], body=b"oops\n")
    for url in urls[1:]:
        mock.get(url, body=ndjson(patient("p")))
    with pytest.raises(ServerError, match="not valid JSON"):
        run(client, fake, tmp_path, max_parallel=1)
    assert len(calls(mock, "GET", f"{BASE}/files")) < 6


# -- supports_export ------------------------------------------------------------------------------


def capability(rest: dict, **extra: object) -> dict:
    return {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "rest": [rest], **extra}


BULK_OD = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
SYSTEM_ONLY = {"mode": "server", "operation": [{"name": "export", "definition": "x/export"}]}
PATIENT_DEF = {
    "mode": "server",
    "resource": [
        {
            "type": "Patient",
            "operation": [{"name": "x", "definition": f"{BULK_OD}/patient-export"}],
        }
    ],
}


@pytest.mark.parametrize(
    ("statement", "level", "expected"),
    [
        (capability(SYSTEM_ONLY), "system", True),
        (capability(SYSTEM_ONLY), "group", True),  # declared elsewhere: try, the kick-off tells
        (capability(PATIENT_DEF), "patient", True),
        (capability({"mode": "server", "operation": [{"name": "everything"}]}), "system", False),
        (capability({"mode": "server"}), "patient", False),
        (
            capability(
                {"mode": "server"},
                instantiates=["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
            ),
            "group",
            True,
        ),
        (capability({"mode": "server", "operation": "garbage", "resource": [1]}), "system", False),
    ],
)
def test_supports_export(mock, client, statement, level, expected):
    mock.get(f"{BASE}/metadata", json=statement)
    assert supports_export(client, level) is expected


@pytest.mark.parametrize("answer", [{"status": 500}, {"json": {"resourceType": "Patient"}}])
def test_supports_export_without_a_statement_is_true(mock, client, answer):
    mock.get(f"{BASE}/metadata", **answer)
    assert supports_export(client, "system") is True
