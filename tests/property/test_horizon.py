"""The decision horizon: no decision changes before `valid_until` with the same facts."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.dates import add_months, months_before
from ips_screen.engine import evaluate
from ips_screen.engine.horizon import (
    valid_until,
    window_change,
    window_compared,
    window_lengths,
    window_pairs,
)
from tests.helpers import (
    CHRONIC_PAIN,
    condition,
    facts_from,
    observation,
    patient,
    proposal,
    qualifying,
    task,
)
from tests.helpers import default_ruleset as ruleset
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


def test_each_window_is_paired_with_the_record_types_compared_with_it():
    """3 months: a pain Condition's first record and a `not-now` deferral (the request and its
    review Task); 24 months: the latest employment status and the spell's start in the priority
    (employment evidence or a fit note), not a request or a Task."""
    by_length = dict(window_pairs(ruleset()))
    assert by_length[3] == {"Condition", "ServiceRequest", "Task"}
    assert by_length[24] == {"Condition", "Observation", "Procedure", "DocumentReference"}


def test_each_window_is_compared_only_with_records_coded_as_its_criteria_read_them():
    """A kind that reads records by their codes has its windows compared only with records coded
    in its codelists; one that finds records otherwise (a review Task by its focus) with any
    record of its types."""
    compared = window_compared(ruleset())
    by_length: dict[int, set] = {}
    for n, _, names in compared:
        by_length.setdefault(n, set()).add(names)
    assert by_length[3] == {frozenset({"persistent-pain"}), None}
    assert frozenset({"chronic-pain-review"}) in by_length[12] and None in by_length[12]
    assert by_length[24] == {
        frozenset({"employment-status", "employment-questions"}),
        frozenset({"employment-status", "employment-questions", "fit-notes"}),
    }


def test_a_record_is_not_reevaluated_at_the_edge_of_a_window_no_criterion_reading_it_has():
    """The chronic pain Condition of 2025-11-27 reaches the 12 months edge on 2026-11-27, but
    the 12-month criteria reading Conditions read pain reviews, fit notes and palliative care,
    not chronic pain codes (which no window compares): the horizon is the next edge that counts.
    Before the horizon looked at codes, it was the next day."""
    rs = ruleset()
    pain = condition(CHRONIC_PAIN, onset="2025-11-27")
    unemployed = observation("73438004", "http://snomed.info/sct", when="2026-09-01")
    facts = facts_from([patient(birth="1980-06-15"), pain, unemployed], rs)
    t = date(2026, 11, 26)
    until = valid_until(rs, facts, t)
    assert until > date(2026, 11, 28)
    last = until - timedelta(days=1)
    for day in (t + timedelta(days=1), t + timedelta(days=2), last):
        assert same(evaluate(rs, facts, day), evaluate(rs, facts, t)), day


def test_a_record_is_not_reevaluated_at_the_edge_of_a_window_its_type_is_not_compared_with():
    """The employment Observation of 2026-09-01 passes 3 months on 2026-12-01, which no
    criterion reading Observations compares with: the horizon is the next edge that counts."""
    rs = ruleset()
    unemployed = observation("73438004", "http://snomed.info/sct", when="2026-09-01")
    review = pain_review("2026-06-10")
    facts = facts_from([patient(birth="1980-06-15"), review, unemployed], rs)
    t = date(2026, 11, 26)
    assert valid_until(rs, facts, t) == date(2027, 6, 10)  # the review reaches the 12 months edge
    assert same(evaluate(rs, facts, date(2027, 6, 9)), evaluate(rs, facts, t))


def pain_review(day: str) -> dict:
    """A chronic pain review (a Procedure) performed on `day`."""
    return {
        "resourceType": "Procedure",
        "id": "rev",
        "status": "completed",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "860381000000107"}]},
        "performedDateTime": day,
    }


def test_a_window_edge_is_a_horizon():
    """A chronic pain review in the last 12 months keeps chronic pain only until it expires."""
    rs = ruleset()
    review = pain_review("2026-03-10")
    unemployed = observation("73438004", "http://snomed.info/sct", when="2026-06-01")
    facts = facts_from([patient(), review, unemployed], rs)
    t = date(2026, 11, 26)
    until = valid_until(rs, facts, t)
    assert t < until <= date(2027, 3, 10)
    assert evaluate(rs, facts, date(2027, 3, 11)).reasons == ("no-chronic-pain",)


def _place(d: date, months: int, day: date) -> int:
    start = months_before(day, months)
    return (d > start) - (d < start)


def first_change(d: date, months: int, t: date) -> date:
    """The reference: day by day from T, the first day `d` is placed differently against the
    window's start than on T (date.max when it is not within 40 months)."""
    place, day = _place(d, months, t), t + timedelta(days=1)
    for _ in range(1300):
        if _place(d, months, day) != place:
            return day
        day += timedelta(days=1)
    return date.max


@st.composite
def near_an_edge(draw) -> tuple[date, int, date]:
    """A date, a window length and an as-of date, mostly within days of the window's edge;
    month ends and 29 February often."""
    year, month = draw(st.integers(2019, 2028)), draw(st.integers(1, 12))
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    day = draw(st.one_of(st.integers(1, last), st.integers(max(1, last - 3), last)))
    d = date(year, month, day)
    months = draw(st.one_of(st.sampled_from([1, 3, 12, 24]), st.integers(1, 36)))
    edge = add_months(d, months)
    t = edge + timedelta(days=draw(st.one_of(st.integers(-5, 5), st.integers(-1100, 100))))
    return d, months, t


@given(case=near_an_edge(), limit_days=st.one_of(st.none(), st.integers(1, 400)))
def test_a_window_change_is_the_first_day_the_place_of_a_date_changes(case, limit_days):
    d, months, t = case
    expected = first_change(d, months, t)
    if limit_days is None:
        assert window_change(d, months, t) == expected
    else:
        limit = t + timedelta(days=limit_days)
        assert window_change(d, months, t, limit) == min(expected, limit)


def test_a_horizon_at_a_window_edge_is_the_day_the_decision_changes():
    """A chronic pain review on 2026-01-31 holds chronic pain in the 12-month window up to and
    including 2027-01-31 (the window's start reaches it then): the horizon is that day, not days
    before it, and the next is the day after, when the decision changes."""
    rs = ruleset()
    review = pain_review("2026-01-31")
    unemployed = observation("73438004", "http://snomed.info/sct", when="2026-06-01")
    facts = facts_from([patient(birth="1980-06-15"), review, unemployed], rs)
    assert valid_until(rs, facts, date(2027, 1, 20)) == date(2027, 1, 31)
    assert valid_until(rs, facts, date(2027, 1, 31)) == date(2027, 2, 1)
    assert evaluate(rs, facts, date(2027, 1, 31)).reasons != ("no-chronic-pain",)
    assert evaluate(rs, facts, date(2027, 2, 1)).reasons == ("no-chronic-pain",)


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
