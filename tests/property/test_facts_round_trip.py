"""The store keeps facts as `to_dict` JSON and reads them back with `from_dict` (and a patient's
records as rows of their own, `store.rows.facts_from`): what comes back equals what went in, for
any record, every field set or not."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.facts.model import PatientFacts, Record
from ips_screen.store.rows import facts_from, record_order
from tests.support.hypothesis_profile import examples

text = st.text(max_size=8)
maybe_text = st.none() | text
days = st.none() | st.dates(date(1900, 1, 1), date(2100, 12, 31))
codings = st.lists(st.tuples(text, text), max_size=3).map(tuple)
records = st.builds(
    Record,
    ref=st.text(min_size=1, max_size=10).map(lambda s: f"Condition/{s}"),
    resource_type=st.sampled_from(["Condition", "Observation", "Task", "ServiceRequest"]),
    codes=codings,
    date=days,
    status=maybe_text,
    clinical_status=maybe_text,
    abatement=days,
    abatement_undated=st.booleans(),
    values=codings,
    components=st.lists(st.tuples(codings, codings), max_size=2).map(tuple),
    intent=maybe_text,
    identifiers=codings,
    focus=maybe_text,
    changed=days,
    status_reason=codings,
    display=maybe_text,
)


def stored(value: dict) -> dict:
    return orjson.loads(orjson.dumps(value))  # as the store writes and reads it


@given(record=records)
@settings(max_examples=examples(0.5))
def test_a_record_comes_back_as_it_went_in(record: Record):
    assert Record.from_dict(stored(record.to_dict())) == record


@given(
    records=st.lists(records, max_size=4, unique_by=lambda r: r.ref),  # a ref is one row
    birth=days,
    gps=st.lists(text, max_size=2).map(tuple),
)
@settings(max_examples=examples(0.5))
def test_a_patients_facts_come_back_from_their_rows(records, birth, gps):
    facts = PatientFacts(
        "p1",
        birth_date=birth,
        general_practitioners=gps,
        records=tuple(sorted(records, key=record_order)),
    )
    row = stored({k: v for k, v in facts.to_dict().items() if k != "records"})
    rows = [Record.from_dict(stored(r.to_dict())) for r in reversed(records)]
    assert facts_from(orjson.dumps(row), rows) == facts
    assert PatientFacts.from_dict(stored(facts.to_dict())) == facts


def test_a_key_that_is_no_field_is_refused():
    with pytest.raises(TypeError, match="surname"):
        Record.from_dict({"ref": "Condition/c", "resource_type": "Condition", "surname": "x"})
