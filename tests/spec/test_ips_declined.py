"""Exclusion `ips-declined`: an IPS proposal whose review Task is rejected or cancelled, or whose
ServiceRequest is revoked, with the change in the last 12 months. The date of the decline is
Task.lastModified (else Task.authoredOn), or for a revoked ServiceRequest meta.lastUpdated (else
authoredOn). A declined patient is proposed again after 12 months."""

from __future__ import annotations

import pytest

from tests.helpers import decide, proposal, qualifying, service_request, step_refs, summary, task

DECLINED = ("excluded", ["ips-declined"], [], None)
OPEN = ("excluded", ["ips-referral-open"], [], None)
PROPOSED = ("propose", [], [], "early")


def declined(when: str, *, task_status: str = "rejected", authored: str = "2025-01-10"):
    """A proposal and its review Task, both declined on `when` (the usual decline)."""
    return [
        proposal(status="revoked", authored=authored, last_updated=f"{when}T12:00:00Z", id="ips"),
        task(
            "ips",
            status=task_status,
            authored=authored,
            last_modified=f"{when}T12:00:00Z",
            id="review",
        ),
    ]


@pytest.mark.parametrize("task_status", ["rejected", "cancelled"])
def test_declined_proposal_is_excluded_and_the_task_is_cited(task_status):
    decision = decide([*qualifying(), *declined("2026-05-01", task_status=task_status)])
    assert summary(decision) == DECLINED
    assert step_refs(decision, "ips-declined") >= {"Task/review"}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2025-11-26", DECLINED),  # exactly 12 months ago: still suppressed
        ("2025-11-25", PROPOSED),  # more than 12 months ago: proposed again
        ("2024-03-01", PROPOSED),
    ],
)
def test_a_declined_patient_is_proposed_again_after_12_months(when, expected):
    assert summary(decide([*qualifying(), *declined(when)])) == expected


@pytest.mark.parametrize("status", ["rejected", "cancelled"])
def test_task_alone_decides_with_a_request_still_in_draft_the_request_is_open_too(status):
    pending = proposal(authored="2026-09-01", id="ips")
    review = task("ips", status=status, authored="2026-09-01", last_modified="2026-09-15T10:00:00Z")
    decision = decide([*qualifying(), pending, review])
    # several exclusions: listed in the table's order
    assert summary(decision) == ("excluded", ["ips-referral-open", "ips-declined"], [], None)


# --- the date of the decline ------------------------------------------------------------------


def test_task_decline_date_is_last_modified_not_authored_on():
    # proposed long ago, rejected this year: the rejection (lastModified) dates the decline
    request = service_request(status="revoked", intent="proposal", authored="2024-01-01", id="ips")
    review = task(
        "ips", status="rejected", authored="2024-01-01", last_modified="2026-02-01T09:00:00Z"
    )
    assert summary(decide([*qualifying(), request, review])) == DECLINED


@pytest.mark.parametrize(
    ("authored", "expected"), [("2026-03-01", DECLINED), ("2025-10-01", PROPOSED)]
)
def test_task_without_last_modified_uses_authored_on(authored, expected):
    request = service_request(
        status="completed", intent="proposal", authored="2024-01-01", id="ips"
    )
    review = task("ips", status="rejected", authored=authored)
    assert summary(decide([*qualifying(), request, review])) == expected


def test_revoked_request_decline_date_is_meta_last_updated():
    recent = service_request(
        status="revoked",
        intent="proposal",
        authored="2024-01-01",
        last_updated="2026-08-10T12:00:00+01:00",
        id="ips",
    )
    decision = decide([*qualifying(), recent])
    assert summary(decision) == DECLINED
    assert step_refs(decision, "ips-declined") == {"ServiceRequest/ips"}
    old = service_request(
        status="revoked",
        intent="proposal",
        authored="2026-01-01",
        last_updated="2025-10-01T12:00:00Z",
    )
    assert summary(decide([*qualifying(), old])) == PROPOSED


@pytest.mark.parametrize(
    ("authored", "expected"), [("2026-01-01", DECLINED), ("2025-10-01", PROPOSED)]
)
def test_revoked_request_without_meta_last_updated_uses_authored_on(authored, expected):
    request = service_request(status="revoked", intent="proposal", authored=authored)
    assert summary(decide([*qualifying(), request])) == expected


def test_decline_changed_after_t_is_ignored():
    # the review was still pending at T: the proposal is open, not declined
    pending = proposal(authored="2026-10-01", id="ips")
    review = task(
        "ips", status="rejected", authored="2026-10-01", last_modified="2026-11-27T10:00:00Z"
    )
    assert summary(decide([*qualifying(), pending, review])) == OPEN


def test_decline_on_the_london_day_of_t_minus_12_months():
    # 2025-11-25 23:30 at UTC-1 is 00:30 on 26 November in London: in the window
    request = service_request(
        status="revoked",
        intent="proposal",
        authored="2025-01-01",
        last_updated="2025-11-25T23:30:00-01:00",
    )
    assert summary(decide([*qualifying(), request])) == DECLINED


@pytest.mark.parametrize(
    "status", ["requested", "accepted", "in-progress", "completed", "entered-in-error"]
)
def test_other_task_statuses_are_not_a_decline(status):
    request = service_request(
        status="completed", intent="proposal", authored="2024-01-01", id="ips"
    )
    review = task("ips", status=status, authored="2026-06-01", last_modified="2026-06-02T10:00:00Z")
    assert summary(decide([*qualifying(), request, review])) == PROPOSED


def test_rejected_task_about_another_request_is_not_an_ips_decline():
    other = service_request(
        code="306109009", status="revoked", authored="2026-06-01", id="pain-clinic"
    )
    review = task("pain-clinic", status="rejected", authored="2026-06-01")
    assert summary(decide([*qualifying(), other, review])) == PROPOSED
