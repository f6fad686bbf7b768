"""Typed evidence: what each criterion kind found, as frozen values (no prose).

The engine keeps a step's evidence beside its status and references; `ips_screen.presentation`
turns it into words for each audience (trace lines, the clinician note, the card, the report).
Evidence is written with the decision (`Step.to_dict`) and read back (`evidence_from_dict`), so a
cached decision can be rendered again. Records carry a reference, date, category and display
(clinical terms from the record), never a patient's identity.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import TypeAdapter


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    """One record a kind used: reference, date (None: undated), category in its codelist
    ("" when the codelist has none) and display (its clinical term, "" when it has none)."""

    ref: str
    date: dt.date | None
    category: str = ""
    display: str = ""


@dataclass(frozen=True, slots=True)
class DeceasedEvidence:
    TAG: ClassVar[str] = "deceased"
    how: Literal["recorded", "dated", "not-recorded"]


AgeBand = Literal["no-birth-date", "under-min", "at-max", "pension", "working-age"]


@dataclass(frozen=True, slots=True)
class AgeEvidence:
    """Age at T against the kind's range; `band` says which bound applied."""

    TAG: ClassVar[str] = "age"
    age: int | None
    band: AgeBand
    min_age: int
    max_age: int | None


@dataclass(frozen=True, slots=True)
class RecordsEvidence:
    """Records coded in a codelist after the kind's filters; `result` says which test decided."""

    TAG: ClassVar[str] = "records"
    codelist: str
    count: int  # as the kind counts them (records, or distinct days and categories)
    min_count: int
    records: tuple[RecordEvidence, ...]  # kept by the filters, in record order
    active: bool  # only Conditions active at T
    within_months: int | None  # the window applied, if any
    categories: tuple[str, ...] | None
    persistence_months: int | None  # the earliest record must be at least this old
    earliest: RecordEvidence | None  # the earliest dated record (persistence), when looked at
    result: Literal["enough", "too-few", "none-dated", "too-recent"]


@dataclass(frozen=True, slots=True)
class OpenReferral:
    """A referral in an open status (`open`), or else completed within the window."""

    record: RecordEvidence
    status: str
    intent: str | None
    open: bool


@dataclass(frozen=True, slots=True)
class ReferralOpenEvidence:
    TAG: ClassVar[str] = "referral-open"
    referrals: tuple[OpenReferral, ...]  # open, or completed within the window
    completed_within_months: int


@dataclass(frozen=True, slots=True)
class Decline:
    """A decline within its window: a review Task (`by_task`) or a revoked request."""

    ref: str
    status: str
    date: dt.date
    window_months: int  # the window that applied
    deferral: str | None  # the deferral reason code whose window applied, if any
    by_task: bool


@dataclass(frozen=True, slots=True)
class ReferralDeclinedEvidence:
    TAG: ClassVar[str] = "referral-declined"
    declines: tuple[Decline, ...]
    within_months: int
    deferrals: tuple[tuple[str, int], ...]  # (reason code, months) with their own window


@dataclass(frozen=True, slots=True)
class LatestCategoryEvidence:
    """The latest dated evidence as of T: its day, records and class (None when they conflict),
    whether it is within `recent_months`, and `result`: pass, fail, stale (not used: too old, or
    a class with no verdict), conflict (several classes that day) or none (nothing dated)."""

    TAG: ClassVar[str] = "latest-category"
    latest_date: dt.date | None
    latest: tuple[RecordEvidence, ...]
    latest_class: str | None
    result: Literal["pass", "fail", "stale", "conflict", "none"]
    recent: bool
    recent_months: int
    undated: int  # records with a class but no date (not used)


@dataclass(frozen=True, slots=True)
class CombinedEvidence:
    TAG: ClassVar[str] = "combined"
    held: tuple[str, ...]  # ids of the nested criteria that held
    total: int


@dataclass(frozen=True, slots=True)
class SpellStartEvidence:
    """The priority step: the start of the current spell (None: not recorded) and the level."""

    TAG: ClassVar[str] = "spell-start"
    start: RecordEvidence | None
    level: Literal["early", "routine"]
    early_within_months: int


Evidence = (
    DeceasedEvidence
    | AgeEvidence
    | RecordsEvidence
    | ReferralOpenEvidence
    | ReferralDeclinedEvidence
    | LatestCategoryEvidence
    | CombinedEvidence
    | SpellStartEvidence
)
_TYPES: dict[str, type] = {
    cls.TAG: cls
    for cls in (
        DeceasedEvidence,
        AgeEvidence,
        RecordsEvidence,
        ReferralOpenEvidence,
        ReferralDeclinedEvidence,
        LatestCategoryEvidence,
        CombinedEvidence,
        SpellStartEvidence,
    )
}


# Every dataclass evidence is made of, with its fields' names in order (`_plain`).
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls))
    for cls in (*_TYPES.values(), RecordEvidence, OpenReferral, Decline)
}


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def evidence_to_dict(evidence: Evidence) -> dict[str, Any]:
    """Plain JSON values, tagged with the evidence type: what pydantic's `dump_python(mode=
    "json")` gives (tests/property/test_evidence_json.py), without building the schema that takes
    a process about 7 ms before its first decision is written."""
    return {"type": evidence.TAG, **_plain(evidence)}


def _plain(value: object) -> dict[str, Any]:
    """A dataclass of evidence as JSON values: an object in field order, tuples as arrays,
    dates in ISO 8601; strings, numbers, booleans and None as they are."""
    out = {}
    for name in _FIELDS[type(value)]:
        item = getattr(value, name)
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            out[name] = item
        else:
            out[name] = _json(item)
    return out


def _json(item: object) -> object:
    if isinstance(item, tuple):
        return [_json(part) for part in item]
    if isinstance(item, dt.date):
        return item.isoformat()
    if type(item) in _FIELDS:
        return _plain(item)
    return item


def evidence_from_dict(data: dict[str, Any]) -> Evidence:
    """The evidence `evidence_to_dict` wrote."""
    fields = dict(data)
    cls = _TYPES[fields.pop("type")]
    return _adapter(cls).validate_python(fields)
