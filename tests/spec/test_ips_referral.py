"""Exclusion `ips-referral-open`: an IPS referral ServiceRequest (project IPS code, or 18781004),
of any intent, with status draft, active or on-hold; or completed with authoredOn in the last 12
months. The tool's own pending proposals count: a rerun reports `ips-referral-open`."""

from __future__ import annotations

import pytest

from tests.helpers import (
    IPS_SYSTEM,
    VOCATIONAL_REHAB,
    concept,
    decide,
    proposal,
    qualifying,
    service_request,
    step_refs,
    summary,
    task,
)

OPEN = ("excluded", ["ips-referral-open"], [], None)
PROPOSED = ("propose", [], [], "early")


@pytest.mark.parametrize("status", ["draft", "active", "on-hold"])
@pytest.mark.parametrize("intent", ["proposal", "plan", "order", "original-order"])
def test_open_statuses_of_any_intent(status, intent):
    decision = decide([*qualifying(), service_request(status=status, intent=intent, id="ips")])
    assert summary(decision) == OPEN
    assert step_refs(decision, "ips-referral-open") == {"ServiceRequest/ips"}


@pytest.mark.parametrize(
    "code",
    [
        VOCATIONAL_REHAB,
        concept("ips-referral", IPS_SYSTEM),
        concept("IPS-REFERRAL ", IPS_SYSTEM),  # codes match whatever their case and spaces
    ],
)
def test_either_ips_code_alone_is_an_ips_referral(code):
    assert summary(decide([*qualifying(), service_request(code=code)])) == OPEN


def test_other_referrals_are_not_ips():
    pain_clinic = service_request(code="306109009")  # referral to pain management service
    assert summary(decide([*qualifying(), pain_clinic])) == PROPOSED


def test_the_tools_own_pending_proposal_is_an_open_referral():
    pending = proposal(authored="2026-11-02", id="mine")
    review = task("mine", status="requested", authored="2026-11-02")
    decision = decide([*qualifying(), pending, review])
    assert summary(decision) == OPEN
    assert "ServiceRequest/mine" in step_refs(decision, "ips-referral-open")
    assert decision.links.reasons == ()  # nothing new is proposed


@pytest.mark.parametrize(
    ("authored", "expected"),
    [
        ("2026-01-15", OPEN),
        ("2025-11-26", OPEN),  # exactly T minus 12 months: included
        ("2025-11-25", PROPOSED),
        ("2025-11-25T23:30:00-01:00", OPEN),  # 00:30 on 26 November in London
        ("2025-11-26T00:30:00+01:00", PROPOSED),  # 23:30 on 25 November in London
        ("2024-06-01", PROPOSED),
        (None, PROPOSED),  # undated: cannot be "in the last 12 months"
    ],
)
def test_completed_referral_in_the_last_12_months_is_open(authored, expected):
    done = service_request(status="completed", authored=authored)
    assert summary(decide([*qualifying(), done])) == expected


@pytest.mark.parametrize("status", ["entered-in-error", "unknown"])
def test_other_statuses_are_not_open(status):
    assert summary(decide([*qualifying(), service_request(status=status)])) == PROPOSED


def test_revoked_long_ago_is_neither_open_nor_declined():
    old = service_request(status="revoked", authored="2024-01-01")
    assert summary(decide([*qualifying(), old])) == PROPOSED


def test_referral_authored_after_t_is_ignored():
    assert summary(decide([*qualifying(), proposal(authored="2026-11-27")])) == PROPOSED


def test_undated_draft_referral_is_present():
    assert summary(decide([*qualifying(), proposal(authored=None)])) == OPEN


def test_referral_of_another_patient_is_not_this_patients():
    other = service_request(subject="someone-else")
    assert summary(decide([*qualifying(), other])) == PROPOSED
