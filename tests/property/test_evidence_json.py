"""Evidence written as JSON by hand (`evidence_to_dict`) is what pydantic writes for it, and
reads back as the same evidence."""

from __future__ import annotations

import datetime as dt
from types import UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from ips_screen.kinds import evidence
from ips_screen.kinds.evidence import evidence_from_dict, evidence_to_dict
from tests.support.hypothesis_profile import examples

INTS = st.integers(-(2**40), 2**40)
DATES = st.dates(dt.date(1900, 1, 1), dt.date(9000, 12, 31))
TEXT = st.text(max_size=12)
SIMPLE = {int: INTS, str: TEXT, bool: st.booleans(), dt.date: DATES, type(None): st.none()}


def values(hint: object) -> st.SearchStrategy:
    """Any value of an evidence field's type (small: tuples of up to 3)."""
    if hint in SIMPLE:
        return SIMPLE[hint]
    if hint in evidence._FIELDS:
        names = evidence._FIELDS[hint]
        hints = get_type_hints(hint)
        return st.builds(hint, **{name: values(hints[name]) for name in names})
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, UnionType):
        return st.one_of([values(arg) for arg in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(values(args[0]), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*(values(arg) for arg in args))
    raise AssertionError(f"no strategy for {hint!r}: add one")


EVIDENCE = st.one_of([values(cls) for cls in evidence._TYPES.values()])


@settings(max_examples=examples(1.0))
@given(EVIDENCE)
def test_evidence_json_is_pydantics_and_reads_back(value: evidence.Evidence):
    written = evidence_to_dict(value)
    reference = {"type": value.TAG, **TypeAdapter(type(value)).dump_python(value, mode="json")}
    assert orjson.dumps(written) == orjson.dumps(reference)  # the same keys in the same order
    assert evidence_from_dict(orjson.loads(orjson.dumps(written))) == value


def test_every_evidence_type_and_part_is_written_by_hand():
    """A new evidence dataclass must be listed where `evidence_to_dict` finds its fields."""
    parts = {evidence.RecordEvidence, evidence.OpenReferral, evidence.Decline}
    assert set(evidence._FIELDS) == {*evidence._TYPES.values(), *parts}
