"""Fault injection for the proposal writer with `responses`: one patient's transaction fails
(400 OperationOutcome, or 500 until the retries run out, or its answer is lost); the duplicate
sweep's If-Match updates, and a sweep that meets a concurrent change.

No test sleeps: the client's sleep records the delays it was asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
import responses

from ips_screen import __version__
from ips_screen.codes import PROPOSAL_ID_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.engine.decision import Decision
from ips_screen.fhir.client import FhirClient, RetryPolicy
from ips_screen.pipeline import decide_all
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import collect
from ips_screen.writeback.writer import (
    PatientResult,
    WriteReport,
    sweep_duplicates,
    write_proposals,
)
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.writer_server import (
    BASE,
    FAILING,
    FakeServer,
    Reply,
    Request,
    outcome,
    reply,
    searchset,
)


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


@pytest.fixture(scope="module")
def decisions(ruleset: CompiledRuleset) -> list[Decision]:
    paths = [FIXTURES / "practice.json"]
    paths += [next((FIXTURES / "patients").glob(f"{n}-*.json")) for n in ("01", "02", "03")]
    population = collect(paths, ruleset)
    found = decide_all(ruleset, population.patients.values(), FROZEN_NOW.date())
    assert [d.outcome for d in found] == ["propose"] * 3
    return list(reversed(found))  # the writer sorts them itself


@pytest.fixture
def client(delays: list[float]) -> Iterator[FhirClient]:
    policy = RetryPolicy(max_attempts=3)
    with FhirClient(BASE, retry=policy, sleep=delays.append, clock=lambda: 0.0) as c:
        yield c


def write(client: FhirClient, decisions: list[Decision], ruleset: CompiledRuleset) -> WriteReport:
    return write_proposals(client, decisions, ruleset, now=FROZEN_NOW, tool_version=__version__)


def check_one_transaction_per_patient(server: FakeServer) -> None:
    bodies: dict[str, set[bytes]] = {}
    for patient, body in server.posts:
        bodies.setdefault(patient, set()).add(body)
        kinds = sorted(e["resource"]["resourceType"] for e in orjson.loads(body)["entry"])
        assert kinds == ["Device", "Provenance", "ServiceRequest", "Task"]
    assert sorted(bodies) == ["Patient/fx-01", "Patient/fx-02", "Patient/fx-03"]
    assert all(len(b) == 1 for b in bodies.values())  # a retry repeats the same transaction


def test_400_for_one_patient_fails_that_patient_only(mock, client, decisions, ruleset, delays):
    server = FakeServer(mock, lambda: reply(outcome("Task.owner: unknown reference"), 400))
    report = write(client, decisions, ruleset)

    assert [(r.patient, r.status) for r in report.results] == [
        ("Patient/fx-01", "created"),
        ("Patient/fx-02", "failed"),
        ("Patient/fx-03", "created"),
    ]
    assert report.failed == [
        (
            FAILING,
            "HTTP 400 Bad Request from POST /r4: error invalid: Task.owner: unknown reference",
        )
    ]
    assert report.results[0].service_request == "ServiceRequest/servicerequest-1-2"
    assert [p for p, _ in server.posts] == ["Patient/fx-01", FAILING, "Patient/fx-03"]
    assert server.written == {"Patient/fx-01", "Patient/fx-03"}
    assert delays == []  # a 400 is not retried
    check_one_transaction_per_patient(server)
    # each patient looked up first; the failed one looked up again (was it applied after all?)
    key = f"{PROPOSAL_ID_SYSTEM}|ips-chronic-pain-v1-fx-02"
    assert server.lookups.count(key) == 2
    assert not report.ok
    assert report.summary_line() == (
        "Wrote 2 new proposals (0 already present, 0 duplicates resolved, 1 failed)"
    )


def test_500_until_retries_run_out(mock, client, decisions, ruleset, delays):
    server = FakeServer(mock, lambda: reply(outcome("database unavailable"), 500))
    report = write(client, decisions, ruleset)

    assert (report.created, report.existing) == (2, 0)
    ((patient, message),) = report.failed
    assert patient == FAILING
    assert message.startswith(
        "HTTP 500 Internal Server Error from POST /r4 (gave up after 3 attempts)"
    )
    assert [p for p, _ in server.posts].count(FAILING) == 3
    assert delays == [1.0, 2.0]
    check_one_transaction_per_patient(server)


def test_lost_answer_of_an_applied_transaction_counts_as_written(mock, client, ruleset, delays):
    (decision,) = [d for d in decisions_of(ruleset) if d.patient == FAILING]
    applied: list[dict] = []

    def search(request: Request) -> Reply:
        return reply(searchset(*applied))

    def post(request: Request) -> Reply:
        applied.append({"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft"})
        raise requests.ConnectionError("connection reset")

    mock.add_callback("GET", f"{BASE}/ServiceRequest", callback=search)
    mock.add_callback("GET", f"{BASE}/Task", callback=lambda r: reply(searchset()))
    mock.add_callback("POST", BASE, callback=post)
    report = write(client, [decision], ruleset)
    assert report.results == [
        PatientResult(FAILING, "created", "ServiceRequest/sr-1", "applied; the answer was lost")
    ]
    assert report.ok


def decisions_of(ruleset: CompiledRuleset) -> list[Decision]:
    path = next((FIXTURES / "patients").glob("02-*.json"))
    population = collect([FIXTURES / "practice.json", path], ruleset)
    return decide_all(ruleset, population.patients.values(), FROZEN_NOW.date())


# -- the sweep -----------------------------------------------------------------------------------

VALUE = "ips-chronic-pain-v1-p1"
EMPTY_RESPONSE = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}


def proposal(rid: str, updated: str, status: str = "draft", version: str = "3") -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "meta": {"versionId": version, "lastUpdated": updated, "tag": [{"code": "keep-me"}]},
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": VALUE}],
        "status": status,
        "intent": "proposal",
        "subject": {"reference": "Patient/p1"},
    }


def review(rid: str, focus: str, status: str = "requested") -> dict:
    return {
        "resourceType": "Task",
        "id": rid,
        "meta": {"versionId": "1", "lastUpdated": "2026-11-26T01:00:00Z"},
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{VALUE}-review"}],
        "status": status,
        "intent": "proposal",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "approve"}]},
        "focus": {"reference": f"ServiceRequest/{focus}"},
        "for": {"reference": "Patient/p1"},
    }  # fmt: skip


def serve(mock: responses.RequestsMock, requests_: list[dict], tasks: list[dict]) -> None:
    mock.add_callback("GET", f"{BASE}/ServiceRequest", lambda r: reply(searchset(*requests_)))
    mock.add_callback("GET", f"{BASE}/Task", lambda r: reply(searchset(*tasks)))


def posted(mock: responses.RequestsMock) -> list[dict]:
    return [orjson.loads(c.request.body) for c in mock.calls if c.request.method == "POST"]


def test_sweep_keeps_the_oldest_and_retires_the_rest_with_if_match(mock, client, ruleset):
    # "b" is older by time although its offset makes the string sort later.
    requests_ = [
        proposal("a", "2026-11-26T09:00:00+00:00"),
        proposal("b", "2026-11-26T10:00:00+02:00"),
    ]
    serve(mock, requests_, [review("ta", "a"), review("tb", "b")])
    mock.add_callback("POST", BASE, lambda r: reply(EMPTY_RESPONSE))

    (dup,) = sweep_duplicates(client, ruleset, now=FROZEN_NOW)
    assert (dup.kept, dup.retired, dup.retired_tasks, dup.error) == (
        "ServiceRequest/b", ("ServiceRequest/a",), ("Task/ta",), None
    )  # fmt: skip
    (bundle,) = posted(mock)
    puts = [e for e in bundle["entry"] if e["request"]["method"] == "PUT"]
    assert [(e["request"]["url"], e["request"]["ifMatch"]) for e in puts] == [
        ("ServiceRequest/a", 'W/"3"'),
        ("Task/ta", 'W/"1"'),
    ]
    request, task = (e["resource"] for e in puts)
    assert request["status"] == task["status"] == "entered-in-error"
    assert request["meta"] == {"tag": [{"code": "keep-me"}]}  # no stale versionId
    assert "Duplicate of ServiceRequest/b" in request["note"][-1]["text"]
    assert task["lastModified"] == "2026-11-26T09:30:00Z"
    (provenance,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"
    ]
    assert [t["reference"] for t in provenance["target"]] == ["ServiceRequest/a", "Task/ta"]


def test_sweep_never_retires_a_copy_someone_acted_on(mock, client, ruleset):
    requests_ = [proposal("a", "2026-11-26T09:00:00Z"), proposal("b", "2026-11-26T09:05:00Z")]
    serve(mock, requests_, [review("ta", "a"), review("tb", "b", status="accepted")])
    mock.add_callback("POST", BASE, lambda r: reply(EMPTY_RESPONSE))

    (dup,) = sweep_duplicates(client, ruleset, now=FROZEN_NOW)
    assert (dup.kept, dup.retired, dup.retired_tasks) == (
        "ServiceRequest/b", ("ServiceRequest/a",), ("Task/ta",)
    )  # fmt: skip


def test_sweep_meeting_a_concurrent_change_changes_nothing(mock, client, ruleset, delays):
    requests_ = [proposal("a", "2026-11-26T09:00:00Z"), proposal("b", "2026-11-26T09:05:00Z")]
    serve(mock, requests_, [])
    stale = outcome('Version conflict: If-Match W/"3" but current is 4')
    mock.add_callback("POST", BASE, lambda r: reply(stale, 412))

    report = write_proposals(client, [], ruleset, now=FROZEN_NOW, tool_version=__version__)
    (dup,) = report.duplicates
    assert dup.retired == ("ServiceRequest/b",)
    assert dup.error is not None and "HTTP 412" in dup.error
    assert report.duplicates_resolved == 0
    assert report.sweep_error is not None and not report.ok
    assert len(posted(mock)) == 1 and delays == []


def test_cli_exits_5_when_a_patient_failed(monkeypatch, tmp_path: Path, capsys):
    from ips_screen import pipeline
    from ips_screen.cli.main import main

    summary = {
        "patients": 2, "as_of": "2026-11-26", "ruleset": "ips-chronic-pain@1.0.0",
        "outcomes": {"propose": 2, "not-eligible": 0, "excluded": 0},
    }  # fmt: skip
    written = WriteReport(
        [
            PatientResult("Patient/a", "created", "ServiceRequest/1"),
            PatientResult("Patient/b", "failed", message="HTTP 400 from POST /r4: invalid"),
        ]
    )

    def fake_write(*args, **kwargs):
        return pipeline.ScreenResult([], summary, tmp_path), written

    monkeypatch.setattr(pipeline, "write_to_server", fake_write)
    argv = ["screen", BASE, "--write", "--out", str(tmp_path)]
    assert main(argv, {"IPS_SCREEN_STATE_DIR": str(tmp_path)}) == 5
    out, err = capsys.readouterr()
    assert "Wrote 1 new proposals (0 already present, 0 duplicates resolved, 1 failed)" in out
    assert "Patient/b not written: HTTP 400 from POST /r4: invalid" in err
