"""A fake practice server for the proposal writer with `responses`: an empty server whose
transaction endpoint writes every patient but one (`FAILING`), which gets the answer or error the
test plans; with the FHIR answers (searchsets, OperationOutcomes, transaction responses) it uses."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import orjson
import requests
import responses

BASE = "https://fhir.example.org/r4"
FHIR_JSON = "application/fhir+json"
FAILING = "Patient/fx-02"

Request = requests.PreparedRequest
Reply = tuple[int, dict[str, str], bytes]


def reply(body: object, status: int = 200) -> Reply:
    return status, {"Content-Type": FHIR_JSON}, orjson.dumps(body)


def searchset(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


def outcome(diagnostics: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": diagnostics}],
    }


def query(request: Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url or "").query)


def patient_of(bundle: dict) -> str:
    """The one patient a transaction writes for (asserts there is exactly one)."""
    subjects = {
        e["resource"]["subject"]["reference"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest"
    }
    assert len(subjects) == 1, subjects
    return subjects.pop()


def transaction_response(bundle: dict, serial: int) -> dict:
    entries = []
    for n, entry in enumerate(bundle["entry"]):
        rtype = entry["resource"]["resourceType"]
        location = f"{rtype}/{rtype.lower()}-{serial}-{n}/_history/1"
        entries.append({"response": {"status": "201 Created", "location": location}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


class FakeServer:
    """An empty server whose transaction endpoint answers with `fail` for one patient."""

    def __init__(self, mock: responses.RequestsMock, fail: Callable[[], Reply | Exception]):
        self.posts: list[tuple[str, bytes]] = []  # (patient, body) of every POST
        self.lookups: list[str] = []  # identifier searches
        self.fail = fail
        self.written: set[str] = set()
        mock.add_callback("GET", f"{BASE}/ServiceRequest", callback=self.search)
        mock.add_callback("GET", f"{BASE}/Task", callback=lambda r: reply(searchset()))
        mock.add_callback("POST", BASE, callback=self.post)

    def search(self, request: Request) -> Reply:
        identifier = query(request).get("identifier")
        if identifier:
            self.lookups.append(identifier[0])
        return reply(searchset())

    def post(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, bytes) else b""
        bundle = orjson.loads(body)
        patient = patient_of(bundle)
        self.posts.append((patient, body))
        if patient == FAILING:
            failure = self.fail()
            if isinstance(failure, Exception):
                raise failure
            return failure
        self.written.add(patient)
        return reply(transaction_response(bundle, len(self.posts)))
