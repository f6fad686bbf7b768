"""The clinicians' open reviews (`review list`, the review page's worklist) when the server does
not answer as asked: a server that refuses `_include` is asked again without it, each proposal
read on its own; a server that is down or failing is a server error at once, not asked the same
search again after the first one's retries."""

from __future__ import annotations

import re

import pytest
import requests
import responses

from ips_screen.codes import PROPOSAL_ID_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.errors import ServerError
from ips_screen.fhir.client import FhirClient
from ips_screen.writeback.review_read import open_reviews
from tests.fhir_support import ips_codes

BASE = "https://fhir.example.org/R4"
TASKS = re.compile(re.escape(f"{BASE}/Task") + r"\?.*")


def task_calls(mock: responses.RequestsMock) -> list[str]:
    return [c.request.url for c in mock.calls if c.request.url.startswith(f"{BASE}/Task")]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"body": requests.exceptions.ConnectionError("refused")}, "connection failed"),
        ({"status": 503}, "HTTP 503"),  # unavailable, and still after the retries
    ],
    ids=["down", "503"],
)
def test_a_server_that_fails_is_an_error_after_one_search_and_its_retries(
    mock, delays, answer: dict, message: str
):
    """Not taken for a server that refuses `_include`: before, the search was asked again
    without it, through the retries again (10 calls and 30 s of waits when it is down)."""
    mock.get(TASKS, **answer)
    gave_up = pytest.raises(ServerError, match=f"{message}.*gave up after 5 attempts")
    with FhirClient(BASE, sleep=delays.append) as client, gave_up:
        open_reviews(client)
    assert len(task_calls(mock)) == 5 and len(delays) == 4
    assert all("_include" in url for url in task_calls(mock))


@pytest.mark.parametrize("status", [400, 500, 501])
def test_a_refused_include_is_asked_again_without_it(mock, delays, status: int):
    """Refused (400, 501) or failed on (500) by a server that answers: each proposal is read on
    its own instead."""
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "proposal",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "approve"}]},
        "focus": {"reference": "ServiceRequest/sr1"},
        "for": {"reference": "Patient/p1"},
    }
    proposal = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "draft",
        "intent": "proposal",
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": "sr1-proposal"}],
        "code": ips_codes(),
        "subject": {"reference": "Patient/p1"},
    }
    refusal = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "_include"}],
    }
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": task}]}
    include = re.compile(re.escape(f"{BASE}/Task") + r"\?.*_include.*")
    mock.get(include, status=status, json=refusal)
    mock.get(TASKS, json=bundle)
    mock.get(f"{BASE}/ServiceRequest/sr1", json=proposal)
    with FhirClient(BASE, sleep=delays.append) as client:
        items = open_reviews(client)
    assert [(i.task_id, i.proposal) for i in items] == [("t1", "ServiceRequest/sr1")]
    assert status == 500 or delays == []  # (a 500 may be retried first)
