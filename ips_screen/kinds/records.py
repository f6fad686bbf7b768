"""Kind `records`: records coded in a codelist, narrowed by status, time and category, counted.

Also the record helpers other kinds share: "active at T" (default-ruleset.md, "Active at T"),
the category a record has in a codelist, and a record as evidence.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from ips_screen.dates import MAX_MONTHS
from ips_screen.facts.model import Record
from ips_screen.kinds.base import KindModel, KindSpec, ResourceType
from ips_screen.kinds.context import CodeMatcher, Context, Finding, constant
from ips_screen.kinds.evidence import RecordEvidence, RecordsEvidence

ACTIVE = frozenset({"active", "recurrence", "relapse"})
NOT_ACTIVE = frozenset({"inactive", "remission", "resolved"})


class Records(KindModel):
    """Records coded in a codelist, optionally narrowed by time, status and category."""

    kind: Literal["records"]
    codelist: str
    resource_types: list[ResourceType] = Field(
        default_factory=lambda: ["Condition", "Observation", "Procedure", "DocumentReference"]
    )
    match: Literal["code", "value", "code-or-value"] = "code"
    active_at_as_of: bool = Field(False, description="Conditions must be active at T")
    within_months: int | None = Field(None, ge=0, le=MAX_MONTHS)
    earliest_at_least_months: int | None = Field(None, ge=0, le=MAX_MONTHS)
    categories: list[str] | None = None
    min_count: int = Field(1, ge=1)
    distinct: Literal["record", "day-and-category"] = "record"


def active_at(record: Record, t: date) -> bool:
    """Condition active at T (default-ruleset.md, "Active at T")."""
    status = record.clinical_status
    if status in ACTIVE:
        return True
    if status in NOT_ACTIVE:
        return record.abatement is not None and record.abatement > t
    if status is None:
        if record.abatement is not None:
            return record.abatement > t
        return not record.abatement_undated
    return False


def one_record_key(day: date | None, category: str, ref: str) -> tuple[str, ...]:
    """What makes records one (`distinct: day-and-category`; default-ruleset.md, "Fit notes"):
    dated records of the same category on the same day are one (a coded entry and its
    document); an undated record is one of its own. The engine's count and every display of the
    records (review, review page, CDS card) group by this key."""
    if day is None:
        return ("ref", ref)
    return ("day", day.isoformat(), category)


def as_evidence(record: Record, category: str = "") -> RecordEvidence:
    return RecordEvidence(record.ref, record.date, category, record.display or "")


def _coded(record: Record, codelist: CodeMatcher, match: str) -> str | None:
    """Category ("" if none) of the record in the codelist by code and/or value, else None."""
    if match in ("code", "code-or-value"):
        found = codelist.first_match(record.codes)
        if found is not None:
            return found
    if match in ("value", "code-or-value"):
        return codelist.first_match(record.values)
    return None


def select_records(rule: Records, ctx: Context) -> list[tuple[Record, str]]:
    """Records of the rule's types coded in its codelist, with their category."""
    codelist = ctx.codelists[rule.codelist]
    types = set(rule.resource_types)
    out = []
    for record in ctx.records:
        if record.resource_type in types:
            category = _coded(record, codelist, rule.match)
            if category is not None:
                out.append((record, category))
    return out


def in_window(rule: Records, ctx: Context) -> list[tuple[Record, str]]:
    """`select_records` narrowed by the rule's categories and window (not status or count)."""
    chosen = select_records(rule, ctx)
    if rule.categories is not None:
        chosen = [(r, c) for r, c in chosen if c in rule.categories]
    if rule.within_months is not None:
        start = ctx.window_start(rule.within_months)
        chosen = [(r, c) for r, c in chosen if r.date is not None and r.date >= start]
    return chosen


def records(rule: Records, ctx: Context) -> Finding:
    coded = select_records(rule, ctx)
    if not coded:  # nothing of the patient's is in the codelist: the same for every patient
        return constant(rule, lambda: _finding(rule, [], 0, (), False, "too-few"))
    chosen = coded
    if rule.active_at_as_of:
        chosen = [
            (r, c) for r, c in chosen if r.resource_type == "Condition" and active_at(r, ctx.t)
        ]
    if rule.within_months is not None:
        start = ctx.window_start(rule.within_months)
        chosen = [(r, c) for r, c in chosen if r.date is not None and r.date >= start]
    if rule.categories is not None:
        wanted = set(rule.categories)
        chosen = [(r, c) for r, c in chosen if c in wanted]
    refs = tuple(r.ref for r, _ in chosen)
    if rule.distinct == "day-and-category":
        count = len({one_record_key(r.date, c, r.ref) for r, c in chosen})
    else:
        count = len(chosen)

    if count < rule.min_count:
        return _finding(rule, chosen, count, refs, False, "too-few")
    if rule.earliest_at_least_months is not None:
        dated = [r for r, _ in coded if r.date is not None]
        if not dated:
            return _finding(rule, chosen, count, refs, False, "none-dated")
        earliest = min(dated, key=lambda r: (r.date, r.ref))
        if earliest.date > ctx.window_start(rule.earliest_at_least_months):
            return _finding(rule, chosen, count, refs, False, "too-recent", earliest)
        refs = (*refs, earliest.ref) if earliest.ref not in refs else refs
        return _finding(rule, chosen, count, refs, True, "enough", earliest)
    return _finding(rule, chosen, count, refs, True, "enough")


def _finding(
    rule: Records,
    chosen: list[tuple[Record, str]],
    count: int,
    refs: tuple[str, ...],
    matched: bool,
    result: str,
    earliest: Record | None = None,
) -> Finding:
    evidence = RecordsEvidence(
        codelist=rule.codelist,
        count=count,
        min_count=rule.min_count,
        records=tuple(as_evidence(r, c) for r, c in chosen),
        active=rule.active_at_as_of,
        within_months=rule.within_months,
        categories=tuple(rule.categories) if rule.categories is not None else None,
        persistence_months=rule.earliest_at_least_months,
        earliest=as_evidence(earliest) if earliest is not None else None,
        result=result,  # type: ignore[arg-type]
    )
    return Finding(matched, refs, evidence)


def _windows(rule: Records) -> tuple[int, ...]:
    return tuple(m for m in (rule.within_months, rule.earliest_at_least_months) if m is not None)


def _check(rule: Records, codelists) -> str | None:
    unknown = sorted(set(rule.categories or ()) - codelists[rule.codelist].categories)
    if unknown:
        return f"categories {unknown} are not in codelist {rule.codelist!r}"
    return None


SPECS = (
    KindSpec(
        "records",
        Records,
        records,
        windows=_windows,
        window_types=lambda rule: rule.resource_types,  # `select_records` keeps only those
        window_coded=True,  # ... coded (by code or value) in its codelist
        check=_check,
        reads=lambda rule: (rule.resource_types, (rule.codelist,)),  # `select_records`
    ),
)
