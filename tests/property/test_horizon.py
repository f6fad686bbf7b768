"""The decision horizon: no decision changes before `valid_until` with the same facts."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.engine import evaluate
from ips_screen.engine.horizon import valid_until, window_lengths
from tests.helpers import default_ruleset as ruleset
from tests.helpers import facts_from, observation, patient, proposal, qualifying, task
from tests.support.generators import (
    AS_OF_CHOICES,
    DECLINE_REASON,
    dates_around,
    random_patient,
    shift_months,
)
from tests.support.rulesets import ruleset_with_defer_months


def same(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("as_of"), db.pop("as_of")
    return da == db


@given(case=random_patient(), data=st.data())
def test_no_decision_changes_before_the_horizon(case, data):
    t, resources = case
    rs = ruleset()
    facts = facts_from(resources, rs)
    decision = evaluate(rs, facts, t)
    until = valid_until(rs, facts, t)
    assert until > t
    last = until - timedelta(days=1)
    days = (last - t).days
    probes = {t, last}
    if days > 0:
        probes.add(t + timedelta(days=data.draw(st.integers(0, days))))
    for probe in probes:
        assert same(evaluate(rs, facts, probe), decision), (probe, until)


def test_window_lengths_are_read_from_the_ruleset():
    assert window_lengths(ruleset()) == (3, 12, 24)


def test_a_window_edge_is_a_horizon():
    """A chronic pain review in the last 12 months keeps chronic pain only until it expires."""
    rs = ruleset()
    review = {
        "resourceType": "Procedure",
        "id": "rev",
        "status": "completed",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "860381000000107"}]},
        "performedDateTime": "2026-03-10",
    }
    unemployed = observation("73438004", "http://snomed.info/sct", when="2026-06-01")
    facts = facts_from([patient(), review, unemployed], rs)
    t = date(2026, 11, 26)
    until = valid_until(rs, facts, t)
    assert t < until <= date(2027, 3, 10)
    assert evaluate(rs, facts, date(2027, 3, 11)).reasons == ("no-chronic-pain",)


# --- declines: the 12-month suppression and the 3-month `not-now` deferral ---------------------


@st.composite
def declined_patient(draw) -> tuple[date, list[dict]]:
    """A patient who qualifies but for a declined proposal: the review Task rejected or cancelled
    (maybe `not-now`), the revoked request's meta.lastUpdated anywhere; dates near every edge."""
    t = draw(st.sampled_from(AS_OF_CHOICES))
    resources = qualifying(pain_onset="2014-01-15", status_date=shift_months(t, -1).isoformat())
    declines = []
    for n in range(draw(st.integers(1, 2))):
        when = draw(dates_around(t))
        updated = draw(dates_around(t))
        request = proposal(
            status="revoked",
            authored="2013-06-01",
            last_updated=f"{updated.isoformat()}T09:00:00Z",
            id=f"ips-{n}",
        )
        reason = draw(st.sampled_from([None, "not-now", "not-now", "not-interested"]))
        extra = {"statusReason": {"coding": [{"system": DECLINE_REASON, "code": reason}]}}
        review = task(
            f"ips-{n}",
            status=draw(st.sampled_from(["rejected", "cancelled", "requested"])),
            authored="2013-06-01",
            last_modified=f"{when.isoformat()}T10:00:00Z",
            **(extra if reason else {}),
        )
        declines += [request, review]
    return t, [*resources, *declines]


@given(case=declined_patient(), data=st.data())
def test_no_decline_decision_changes_before_the_horizon(case, data):
    t, resources = case
    rs = ruleset()
    facts = facts_from(resources, rs)
    decision = evaluate(rs, facts, t)
    until = valid_until(rs, facts, t)
    assert until > t
    last = until - timedelta(days=1)
    probes = {t, last}
    if (last - t).days > 0:
        probes.add(t + timedelta(days=data.draw(st.integers(0, (last - t).days))))
    for probe in probes:
        assert same(evaluate(rs, facts, probe), decision), (probe, until)


def test_the_end_of_a_not_now_deferral_is_a_horizon():
    """Declined as `not-now` on 2026-09-26: deferred until 2026-12-26, proposed from the 27th."""
    rs = ruleset()
    reason = {"coding": [{"system": DECLINE_REASON, "code": "not-now"}]}
    declined = [
        proposal(status="revoked", authored="2026-09-01", id="ips"),
        task("ips", status="rejected", last_modified="2026-09-26T10:00:00Z", statusReason=reason),
    ]
    facts = facts_from([*qualifying(), *declined], rs)
    t = date(2026, 11, 26)
    assert evaluate(rs, facts, t).reasons == ("ips-declined",)
    until = valid_until(rs, facts, t)
    assert t < until <= date(2026, 12, 27)
    assert evaluate(rs, facts, date(2026, 12, 26)).reasons == ("ips-declined",)
    assert evaluate(rs, facts, date(2026, 12, 27)).outcome == "propose"


def test_the_deferral_window_is_one_of_the_horizon_lengths(tmp_path):
    assert 5 in window_lengths(ruleset_with_defer_months(tmp_path, 5))
