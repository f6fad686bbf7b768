"""One line of words per trace step, from its typed evidence (`explain`, decisions.ndjson)."""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch

from ips_screen.engine.decision import Step
from ips_screen.kinds.evidence import (
    AgeEvidence,
    CombinedEvidence,
    DeceasedEvidence,
    LatestCategoryEvidence,
    RecordEvidence,
    RecordsEvidence,
    ReferralDeclinedEvidence,
    ReferralOpenEvidence,
    SpellStartEvidence,
)
from ips_screen.presentation.labels import one_line

LISTED = 5  # records named in a records step's line
_BY_TYPE: dict[type, Callable[[object, Step], str]] = {}  # `step_line`'s lookups of `_line`


def step_line(step: Step) -> str:
    """The step's evidence in words ("" for a step with no evidence)."""
    evidence = step.evidence
    if evidence is None:
        return ""
    kind = type(evidence)
    words = _BY_TYPE.get(kind)
    if words is None:  # `_line`'s function for the type, looked up once (a lookup a step is 1 us)
        words = _BY_TYPE.setdefault(kind, _line.dispatch(kind))
    return words(evidence, step)


def record_words(record: RecordEvidence) -> str:
    """ "<display> (<ref>, <date>)"; the reference stands in for a missing display."""
    when = record.date.isoformat() if record.date else "undated"
    return f"{one_line(record.display or record.ref)} ({record.ref}, {when})"


@singledispatch
def _line(evidence: object, step: Step) -> str:
    raise TypeError(f"no trace words for {type(evidence).__name__}")


@_line.register
def _(evidence: DeceasedEvidence, step: Step) -> str:
    return {
        "recorded": "recorded as deceased",
        "dated": "date of death on or before the as-of date",
        "not-recorded": "not recorded as deceased",
    }[evidence.how]


@_line.register
def _(evidence: AgeEvidence, step: Step) -> str:
    words: dict[str, Callable[[], str]] = {
        "no-birth-date": lambda: "no birth date recorded",
        "under-min": lambda: f"aged {evidence.age}, under {evidence.min_age}",
        "at-max": lambda: f"aged {evidence.age}, {evidence.max_age} or over",
        "pension": lambda: f"aged {evidence.age}, at or over UK State Pension age",
        "working-age": lambda: f"aged {evidence.age}, of working age",
    }
    return words[evidence.band]()


def records_summary(evidence: RecordsEvidence) -> str:
    """ "N record(s) in <codelist> (<filters>)"."""
    notes = []
    if evidence.active:
        notes.append("active")
    if evidence.within_months is not None:
        notes.append(f"in the last {evidence.within_months} months")
    if evidence.categories is not None:
        notes.append(" or ".join(evidence.categories))
    what = f"{evidence.count} record(s) in {evidence.codelist}"
    return what + (f" ({', '.join(notes)})" if notes else "")


@_line.register
def _(evidence: RecordsEvidence, step: Step) -> str:
    what = records_summary(evidence)
    if evidence.result == "too-few":
        return f"{what}; needs {evidence.min_count}"
    if evidence.result == "none-dated":
        return f"{what}, but none dated: cannot show persistence"
    earliest = evidence.earliest
    first = f"first recorded {earliest.date.isoformat()}" if earliest and earliest.date else ""
    if evidence.result == "too-recent":
        return f"{what}; {first}, less than {evidence.persistence_months} months"
    if first:
        what = f"{what}; {first}"
    listed = "; ".join(record_words(r) for r in evidence.records[:LISTED])
    return f"{what}: {listed}" if listed else what


@_line.register
def _(evidence: ReferralOpenEvidence, step: Step) -> str:
    if not evidence.referrals:
        return "no open or recent referral"
    items = []
    for found in evidence.referrals:
        record = found.record
        if found.open:
            what = f"{found.status} ({found.intent or 'no intent'})"
        else:
            what = f"completed {record.date.isoformat() if record.date else 'undated'}"
        items.append(f"{record.ref} {what}")
    return "referral open: " + "; ".join(items)


@_line.register
def _(evidence: ReferralDeclinedEvidence, step: Step) -> str:
    if not evidence.declines:
        shorter = "".join(f" ({months} for {code})" for code, months in evidence.deferrals)
        return f"no proposal declined in the last {evidence.within_months} months{shorter}"
    items = []
    for d in evidence.declines:
        text = f"{d.ref} {d.status} {d.date.isoformat()}"
        if not d.by_task:
            items.append(f"{text} ({d.window_months}-month window)")
        else:
            why = f"deferred, {d.deferral}" if d.deferral else "declined"
            items.append(f"{text} ({why}: {d.window_months}-month window)")
    return "declined: " + "; ".join(items)


def latest_said(evidence: LatestCategoryEvidence) -> str:
    """ "<day>: <categories> (<refs>)" of the latest evidence."""
    day = evidence.latest_date.isoformat() if evidence.latest_date else "undated"
    cats = ", ".join(sorted({r.category for r in evidence.latest}))
    refs = ", ".join(dict.fromkeys(r.ref for r in evidence.latest))
    return f"{day}: {cats} ({refs})"


@_line.register
def _(evidence: LatestCategoryEvidence, step: Step) -> str:
    note = f"; {evidence.undated} undated record(s) not used" if evidence.undated else ""
    said = f"latest evidence {latest_said(evidence)}"
    older = f", older than {evidence.recent_months} months"
    if evidence.result == "pass":
        return f"{said}{'' if evidence.recent else older}{note}"
    if evidence.result == "fail":
        return f"{said}{note}"
    if evidence.result == "stale":
        why = f"{said}{older}"
    elif evidence.result == "conflict":
        why = f"conflicting evidence on {latest_said(evidence)}"
    else:
        why = "no dated evidence recorded"
    fallback = f"; {step_line(step.parts[0])}" if step.parts else ""
    return f"{why}{note}{fallback}"


@_line.register
def _(evidence: CombinedEvidence, step: Step) -> str:
    held = evidence.held
    return f"{len(held)} of {evidence.total} held" + (f": {', '.join(held)}" if held else "")


@_line.register
def _(evidence: SpellStartEvidence, step: Step) -> str:
    start = evidence.start
    if start is None or start.date is None:
        return "no dated start of spell"
    return (
        f"current spell out of work began {start.date.isoformat()} ({start.ref}): "
        f"{evidence.level} (early when within {evidence.early_within_months} months)"
    )
