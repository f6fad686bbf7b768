"""The CDS Hooks card's one line of IPS history (issue 7, point 2), through the HTTP call: a
patient proposed again after a decline or a referral sees it in the card's detail, after the
fit notes and before "IPS is voluntary" (issue 8); a patient with no history gets no such line.
Words from the ruleset's `texts.history`."""

from __future__ import annotations

import warnings

from tests.support.cds import call, fixture_resources, hook_request, prefetch_of

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def card_detail(client: TestClient, ehr_key, fixture: str) -> str:
    resources = fixture_resources(fixture)
    response = call(client, ehr_key, hook_request(f"fx-{fixture}", prefetch_of(resources)))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    return card["detail"]


def history_line(detail: str) -> str:
    (line,) = [line for line in detail.splitlines() if "IPS history" in line]
    return line


def test_a_card_after_an_old_decline_says_so_in_one_line(make_client, ehr_key):
    client = make_client()[0]
    detail = card_detail(client, ehr_key, "45")  # declined 2025-10-20, request edited lately
    line = "- IPS history: declined 13 months ago: Patient not interested in IPS at present"
    assert history_line(detail) == line
    assert detail.index(line) < detail.index("IPS is voluntary")
    deferred = history_line(card_detail(client, ehr_key, "14"))  # not-now, 2025-10-14
    assert deferred == "- IPS history: deferred 13 months ago: Not the right time; reconsider later"


def test_a_card_after_a_referral_long_ago_says_when(make_client, ehr_key):
    detail = card_detail(make_client()[0], ehr_key, "15")
    assert history_line(detail) == "- IPS history: referred to IPS 16 months ago"


def test_no_history_no_line(make_client, ehr_key):
    assert "IPS history" not in card_detail(make_client()[0], ehr_key, "01")
