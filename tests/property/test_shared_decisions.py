"""Shared decisions (`nightly.deciding.Shared`): a patient with no records gets, from the decision
of another patient with the same other facts, exactly what deciding them in full gives (line,
summary key, horizon, digest, proposal counts), whatever their ids. The reference is `decide`
itself; the claim rests on the engine reading a patient's id only to name them."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.dates import uk_state_pension_date
from ips_screen.nightly.deciding import STAND_IN, Deciding, Shared, decide
from ips_screen.outputs.summary import SummaryCounter
from tests.helpers import default_ruleset as ruleset
from tests.helpers import facts_from, patient
from tests.support.generators import AS_OF_CHOICES, a_birth_date

FHIR_IDS = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)


@st.composite
def record_less(draw, t: date) -> dict:
    """The fields of a Patient with no records (the id left to the caller)."""
    extra = draw(
        st.sampled_from(
            [{}] * 6
            + [{"deceasedBoolean": True}, {"deceasedBoolean": False}]
            + [{"deceasedDateTime": d.isoformat()} for d in (t, t + timedelta(days=1))]
        )
    )
    gps = draw(st.sampled_from([[], ["Practitioner/gp-1"], ["Organization/o", "Practitioner/2"]]))
    if gps:
        extra["generalPractitioner"] = [{"reference": ref} for ref in gps]
    return {"birth": draw(a_birth_date(t)), **extra}


@given(data=st.data(), t=st.sampled_from(AS_OF_CHOICES))
def test_a_shared_decision_is_the_one_deciding_in_full_gives(data, t):
    rs = ruleset()
    how = Deciding(rs, t, None, Path("unused"))  # the store is only read by worker processes
    counter = SummaryCounter(rs)
    shared = Shared()
    kinds = data.draw(st.lists(record_less(t), min_size=1, max_size=3))
    for n in range(data.draw(st.integers(2, 8))):
        fields = data.draw(st.sampled_from(kinds))  # the same facts again, or others
        pid = data.draw(FHIR_IDS)
        facts = facts_from([patient(id=pid, **fields)], rs)
        assert facts.id == pid and not facts.records
        got = shared.decide(facts, how, counter)
        assert got is not None  # the default ruleset proposes no one without records
        assert got == decide(facts, how, counter), n
        assert STAND_IN.encode() not in got.line and b"\\u0000" not in got.line
    assert len(shared.known) <= len(kinds)


@cache
def pension_edges(t: date) -> list[str]:
    """Birth dates whose State Pension date is the day before T, T or the day after: patients
    of the same age on either side of it (the pension age rises in steps of days)."""
    days = (date(1979, 1, 1) - date(1953, 1, 1)).days
    births = (date(1953, 1, 1) + timedelta(days=n) for n in range(days))
    return [b.isoformat() for b in births if abs((uk_state_pension_date(b) - t).days) <= 1]


@given(data=st.data(), t=st.sampled_from(AS_OF_CHOICES))
def test_patients_born_on_other_days_share_what_deciding_them_in_full_gives(data, t):
    """Record-less patients born on different days (at age boundaries, the State Pension date's
    steps and 29 February among them) share a decision whenever the criteria find the same of
    their birth dates, and each keeps their own horizon."""
    rs = ruleset()
    how, counter, shared = Deciding(rs, t, None, Path("unused")), SummaryCounter(rs), Shared()
    edges = pension_edges(t)
    births = data.draw(
        st.lists(a_birth_date(t) | st.sampled_from(edges), min_size=2, max_size=12)
        if edges
        else st.lists(a_birth_date(t), min_size=2, max_size=12)
    )
    for n, birth in enumerate(births):
        facts = facts_from([patient(id=f"p{n}", birth=birth)], rs)
        got = shared.decide(facts, how, counter)
        assert got is not None
        assert got == decide(facts, how, counter), (n, birth)


def test_patients_of_the_same_age_share_one_decision_with_their_own_birthdays():
    rs = ruleset()
    t = date(2026, 11, 26)
    how, counter, shared = Deciding(rs, t, None, Path("unused")), SummaryCounter(rs), Shared()
    a = shared.decide(facts_from([patient(id="a", birth="1980-01-02")], rs), how, counter)
    b = shared.decide(facts_from([patient(id="b", birth="1980-07-09")], rs), how, counter)
    assert a is not None and b is not None
    assert len(shared.known) == 1  # one decision: aged 46, of working age
    assert (a.until, b.until) == ("2027-01-02", "2027-07-09")  # each one's next birthday
    assert a.line.replace(b"Patient/a", b"Patient/b") == b.line


def test_patients_with_records_or_other_facts_are_not_shared():
    rs = ruleset()
    t = date(2026, 11, 26)
    how, counter, shared = Deciding(rs, t, None, Path("unused")), SummaryCounter(rs), Shared()
    young = facts_from([patient(id="a", birth="2001-02-03")], rs)
    old = facts_from([patient(id="b", birth="1950-02-03")], rs)
    for facts in (young, old):
        got = shared.decide(facts, how, counter)
        assert got is not None
        assert got == decide(facts, how, counter)
    assert len(shared.known) == 2  # one decision per set of facts (here: per age)
    with_record = facts_from(
        [
            patient(id="c", birth="2001-02-03"),
            {
                "resourceType": "Condition",
                "id": "x",
                "subject": {"reference": "Patient/c"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]},
            },
        ],
        rs,
    )
    assert with_record.records
    assert shared.decide(with_record, how, counter) is None
