"""The decision horizon: no decision changes before `valid_until` with the same facts."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.engine import evaluate
from ips_screen.engine.horizon import valid_until, window_lengths
from tests.helpers import default_ruleset as ruleset
from tests.helpers import facts_from, observation, patient
from tests.property.test_properties import SETTINGS, random_patient


def same(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("as_of"), db.pop("as_of")
    return da == db


@SETTINGS
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
