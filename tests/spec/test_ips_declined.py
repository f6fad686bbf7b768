"""Exclusion `ips-declined`: an IPS proposal whose review Task is rejected or cancelled, or whose
ServiceRequest is revoked, with the change in the last 12 months (`decline_suppression_months`).

The date of the decline: when the proposal has a rejected or cancelled review Task, that Task's
lastModified (else its authoredOn) alone dates it, whatever the ServiceRequest's meta says; only a
revoked ServiceRequest with no such Task is dated by meta.lastUpdated (else authoredOn). A revoked
ServiceRequest dated after T is ignored. A decline whose Task.statusReason is the project's
`not-now` reason suppresses for 3 months (`defer_months`) instead of 12; the exclusion reason is
`ips-declined` either way and the trace says which window applied."""

from __future__ import annotations

import pytest

from ips_screen.presentation.trace import step_line
from tests.helpers import decide, proposal, qualifying, service_request, step_refs, summary, task
from tests.support.rulesets import ruleset_with_defer_months

DECLINED = ("excluded", ["ips-declined"], [], None)
OPEN = ("excluded", ["ips-referral-open"], [], None)
PROPOSED = ("propose", [], [], "early")


DECLINE_REASON = "https://ips-screen.org/fhir/CodeSystem/decline-reason"


def because(code: str, system: str = DECLINE_REASON) -> dict:
    """A review Task's statusReason."""
    return {"coding": [{"system": system, "code": code}]}


def declined(
    when: str,
    *,
    task_status: str = "rejected",
    authored: str = "2025-01-10",
    reason: str | None = None,
    revoked_on: str | None = None,
):
    """A proposal and its review Task, both declined on `when` (the usual decline), for `reason`
    (a decline-reason code); `revoked_on` gives the request another meta.lastUpdated."""
    extra = {"statusReason": because(reason)} if reason else {}
    return [
        proposal(
            status="revoked",
            authored=authored,
            last_updated=f"{revoked_on or when}T12:00:00Z",
            id="ips",
        ),
        task(
            "ips",
            status=task_status,
            authored=authored,
            last_modified=f"{when}T12:00:00Z",
            id="review",
            **extra,
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


# --- the Task alone dates a decline -----------------------------------------------------------


def test_a_rejected_task_dates_the_decline_whatever_the_request_meta_says():
    # rejected 13 months ago; the server rewrote the revoked request's meta.lastUpdated last week
    old = declined("2025-10-20", revoked_on="2026-11-19")
    decision = decide([*qualifying(), *old])
    assert summary(decision) == PROPOSED


@pytest.mark.parametrize("task_status", ["rejected", "cancelled"])
def test_a_recent_task_decline_counts_whatever_the_request_meta_says(task_status):
    # declined this year; the request's meta.lastUpdated is older (an edit that set it back)
    recent = declined("2026-05-01", task_status=task_status, revoked_on="2024-01-01")
    decision = decide([*qualifying(), *recent])
    assert summary(decision) == DECLINED
    assert step_refs(decision, "ips-declined") == {"Task/review"}


def test_only_a_revoked_request_with_no_declined_task_is_dated_by_its_meta():
    request = proposal(
        status="revoked", authored="2024-01-01", last_updated="2026-06-01T12:00:00Z", id="ips"
    )
    # a review Task still requested is not a decline: the request's own date counts
    review = task("ips", status="requested", authored="2024-01-01")
    decision = decide([*qualifying(), request, review])
    assert summary(decision) == DECLINED
    assert step_refs(decision, "ips-declined") == {"ServiceRequest/ips"}


def test_a_revoked_request_dated_after_t_is_ignored():
    request = proposal(
        status="revoked", authored="2026-10-01", last_updated="2026-11-27T09:00:00Z", id="ips"
    )
    assert summary(decide([*qualifying(), request])) == PROPOSED


# --- deferral: `not-now` suppresses for 3 months ----------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-09-26", DECLINED),  # 2 months ago
        ("2026-08-26", DECLINED),  # exactly 3 months ago: still deferred
        ("2026-08-25", PROPOSED),  # more than 3 months ago: proposed again
        ("2026-07-26", PROPOSED),  # 4 months ago
    ],
)
@pytest.mark.parametrize("task_status", ["rejected", "cancelled"])
def test_a_not_now_decline_defers_for_3_months(when, expected, task_status):
    decision = decide([*qualifying(), *declined(when, reason="not-now", task_status=task_status)])
    assert summary(decision) == expected


@pytest.mark.parametrize("reason", ["not-interested", "already-supported", "other", None])
def test_every_other_reason_suppresses_for_12_months(reason):
    four_months_ago = declined("2026-07-26", reason=reason)
    assert summary(decide([*qualifying(), *four_months_ago])) == DECLINED
    thirteen_months_ago = declined("2025-10-20", reason=reason)
    assert summary(decide([*qualifying(), *thirteen_months_ago])) == PROPOSED


def test_not_now_in_another_code_system_is_not_a_deferral():
    review = declined("2026-07-26")
    review[1]["statusReason"] = because("not-now", "http://example.org/other-reasons")
    assert summary(decide([*qualifying(), *review])) == DECLINED


def test_the_trace_says_which_window_applied():
    deferred = decide([*qualifying(), *declined("2026-09-26", reason="not-now")])
    step = deferred.step("ips-declined")
    assert "3-month window" in step_line(step) and "not-now" in step_line(step)
    refused = decide([*qualifying(), *declined("2026-09-26", reason="not-interested")])
    assert "12-month window" in step_line(refused.step("ips-declined"))
    revoked = proposal(status="revoked", authored="2026-01-01", id="ips")
    assert "12-month window" in step_line(decide([*qualifying(), revoked]).step("ips-declined"))


def test_the_deferral_window_is_a_parameter_of_the_ruleset(tmp_path):
    five_months_ago = declined("2026-06-26", reason="not-now")
    assert summary(decide([*qualifying(), *five_months_ago])) == PROPOSED
    longer = ruleset_with_defer_months(tmp_path, 6)
    assert summary(decide([*qualifying(), *five_months_ago], ruleset=longer)) == DECLINED
