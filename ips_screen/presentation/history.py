"""A patient's IPS history from their records: earlier proposals, referrals, declines and
deferrals, each with when, who, the reason and note, and when a decline's suppression ends.

Pure: the resources come from the FHIR server (`ips_screen.writeback.ips_history`) or from a CDS
Hooks prefetch (the card's one line). Which requests count, how a decline is dated and how long it
suppresses come from the ruleset's own `referral-declined` rule (default-ruleset.md, "Precise
definitions": a declined proposal is dated by its rejected or cancelled review Task alone,
lastModified else authoredOn; a revoked request with no such Task by meta.lastUpdated else
authoredOn; a Task whose statusReason is a `deferrals` entry uses that entry's months). The words
are the ruleset's `texts.history`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from ips_screen.codes import PROPOSAL_ID_SYSTEM, PROVENANCE_AGENT_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.dates import add_months, long_iso, months_before, parse_fhir_date
from ips_screen.facts.extract import codings, reference_to
from ips_screen.kinds.referral_declined import ReferralDeclined
from ips_screen.kinds.registry import walk_criteria
from ips_screen.presentation.labels import one_line
from ips_screen.ruleset.codelists import normalise
from ips_screen.ruleset.loader import CompiledRuleset

Resource = dict
EVENTS = ("proposed", "awaiting", "referred", "declined", "deferred")
_AUTHOR = normalise(PROVENANCE_AGENT_SYSTEM, "author")
CARD_EVENTS = frozenset({"referred", "declined", "deferred"})


@dataclass(frozen=True)
class HistoryEntry:
    """One event of a patient's IPS history."""

    event: str  # one of EVENTS
    ref: str  # the ServiceRequest (proposal or referral order)
    when: str | None  # YYYY-MM-DD, London day
    who: str | None = None  # the clinician's reference (Practitioner/...); None: the tool
    reason: str | None = None  # a decline's reason, in the ruleset's words
    note: str | None = None  # a decline's note
    until: str | None = None  # a decline's or deferral's last day of suppression
    suppressing: bool = False  # whether that suppression still runs on the day of display
    status: str | None = None  # the request's status
    task: str | None = None  # the review Task, when the event is its decision


def declined_rule(ruleset: CompiledRuleset) -> ReferralDeclined | None:
    """The ruleset's `referral-declined` rule (None without one)."""
    for exclusion in ruleset.model.exclusions:
        for rule in walk_criteria(exclusion.rule):
            if isinstance(rule, ReferralDeclined):
                return rule
    return None


def last_suppressed_day(declined_on: date, months: int) -> date:
    """The last day T on which a decline of `declined_on` is still within the last `months`
    months (the rule: months_before(T, months) <= declined_on)."""
    day = add_months(declined_on, months)
    while months_before(day + timedelta(days=1), months) <= declined_on:
        day += timedelta(days=1)
    return day


def _is_ips(resource: Resource, ruleset: CompiledRuleset, codelist: str | None) -> bool:
    if any(
        isinstance(i, dict) and i.get("system") == PROPOSAL_ID_SYSTEM
        for i in resource.get("identifier") or ()
    ):
        return True
    found = ruleset.codelists.get(codelist) if codelist else None
    return found is not None and found.first_match(codings(resource.get("code"))) is not None


def _authors(provenances: Iterable[Resource]) -> dict[str, str]:
    """Target reference -> the author agent's reference, from Provenance (latest recorded wins)."""
    out: dict[str, tuple[str, str]] = {}
    for prov in provenances:
        author = next(
            (
                reference_to(a.get("who"))
                for a in prov.get("agent") or ()
                if isinstance(a, dict) and _AUTHOR in codings(a.get("type"))
            ),
            None,
        )
        if not author or author.startswith("Device/"):
            continue
        recorded = str(prov.get("recorded") or "")
        for target in prov.get("target") or ():
            ref = reference_to(target)
            if ref and (ref not in out or out[ref][0] <= recorded):
                out[ref] = (recorded, author)
    return {ref: who for ref, (_, who) in out.items()}


def _reason(task: Resource) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    concept = task.get("statusReason")
    if not isinstance(concept, dict):
        return None, ()
    display = concept.get("text") or next(
        (
            c.get("display")
            for c in concept.get("coding") or ()
            if isinstance(c, dict) and c.get("display")
        ),
        None,
    )
    return (one_line(display) if isinstance(display, str) else None), codings(concept)


def _note(task: Resource) -> tuple[str | None, str | None]:
    """(the notes' text on one line, the last note's author)."""
    notes = [n for n in task.get("note") or () if isinstance(n, dict) and n.get("text")]
    if not notes:
        return None, None
    text = " / ".join(one_line(str(n["text"])) for n in notes)
    return text, reference_to(notes[-1].get("authorReference"))


def _decline(
    sr_ref: str,
    when: date | None,
    months: int,
    deferred: bool,
    today: date,
    **fields: object,
) -> HistoryEntry:
    until = last_suppressed_day(when, months) if when else None
    return HistoryEntry(
        "deferred" if deferred else "declined",
        sr_ref,
        when.isoformat() if when else None,
        until=until.isoformat() if until else None,
        suppressing=until is not None and when is not None and when <= today <= until,
        **fields,  # type: ignore[arg-type]
    )


def ips_history(
    resources: Iterable[Resource], ruleset: CompiledRuleset, today: date
) -> list[HistoryEntry]:
    """The IPS history in one patient's ServiceRequests, review Tasks and Provenance, newest
    first (undated last). Requests count when they are this tool's proposals or coded in the
    codelist of the ruleset's `referral-declined` rule."""
    rule = declined_rule(ruleset)
    task_statuses = set(rule.task_statuses) if rule else {"rejected", "cancelled"}
    request_statuses = set(rule.request_statuses) if rule else {"revoked"}
    window = rule.within_months if rule else 12
    deferrals = {
        normalise(d.system, d.code): d.within_months for d in (rule.deferrals if rule else ())
    }
    items = list(resources)
    requests = [
        r
        for r in items
        if r.get("resourceType") == "ServiceRequest"
        and r.get("id")
        and _is_ips(r, ruleset, rule.codelist if rule else None)
    ]
    tasks: dict[str, list[Resource]] = {}
    for task in items:
        if task.get("resourceType") == "Task" and (TASK_CODE_SYSTEM, "APPROVE") in codings(
            task.get("code")
        ):
            focus = reference_to(task.get("focus"))
            if focus:
                tasks.setdefault(focus, []).append(task)
    authors = _authors(r for r in items if r.get("resourceType") == "Provenance")
    entries: list[HistoryEntry] = []
    for sr in requests:
        ref = f"ServiceRequest/{sr['id']}"
        authored = parse_fhir_date(sr.get("authoredOn"))
        status = sr.get("status")
        reviews = tasks.get(ref, [])
        if sr.get("intent") == "proposal":
            open_review = status == "draft" and any(t.get("status") == "requested" for t in reviews)
            entries.append(
                HistoryEntry(
                    "awaiting" if open_review else "proposed",
                    ref,
                    authored.isoformat() if authored else None,
                    status=status,
                    task=next((f"Task/{t['id']}" for t in reviews if t.get("id")), None),
                )
            )
        else:
            entries.append(
                HistoryEntry(
                    "referred",
                    ref,
                    authored.isoformat() if authored else None,
                    who=reference_to(sr.get("requester")),
                    status=status,
                )
            )
        declines = [t for t in reviews if t.get("status") in task_statuses and t.get("id")]
        for task in declines:
            reason, codes = _reason(task)
            months = next((deferrals[c] for c in codes if c in deferrals), None)
            note, note_author = _note(task)
            task_ref = f"Task/{task['id']}"
            entries.append(
                _decline(
                    ref,
                    parse_fhir_date(task.get("lastModified") or task.get("authoredOn")),
                    window if months is None else months,
                    months is not None,
                    today,
                    who=authors.get(task_ref) or note_author,
                    reason=reason,
                    note=note,
                    status=task.get("status"),
                    task=task_ref,
                )
            )
        if not declines and status in request_statuses:
            changed = (sr.get("meta") or {}).get("lastUpdated") or sr.get("authoredOn")
            entries.append(
                _decline(
                    ref,
                    parse_fhir_date(changed),
                    window,
                    False,
                    today,
                    who=authors.get(ref),
                    status=status,
                )
            )
    entries.sort(key=lambda e: (e.when or "", EVENTS.index(e.event), e.ref), reverse=True)
    return entries


def ago(when: date, today: date, ruleset: CompiledRuleset) -> str:
    """How long ago, in whole months (else days), in the ruleset's words."""
    words = ruleset.model.texts.history
    months = 0
    while add_months(when, months + 1) <= today:
        months += 1
    if months == 1:
        return words.month_ago
    if months > 1:
        return words.months_ago.format(n=months)
    days = (today - when).days
    if days <= 0:
        return words.today
    return words.day_ago if days == 1 else words.days_ago.format(n=days)


def event_words(entry: HistoryEntry, ruleset: CompiledRuleset) -> str:
    return str(getattr(ruleset.model.texts.history, entry.event))


def suppression_words(entry: HistoryEntry, ruleset: CompiledRuleset) -> str | None:
    """ "deferred until <date>", "not suggested again until <date>" or "ended <date>"."""
    if entry.until is None or entry.event not in ("declined", "deferred"):
        return None
    words = ruleset.model.texts.history
    if not entry.suppressing:
        return words.ended.format(date=long_iso(entry.until))
    template = words.deferred_until if entry.event == "deferred" else words.declined_until
    return template.format(date=long_iso(entry.until))


def history_line(
    entry: HistoryEntry, ruleset: CompiledRuleset, names: Mapping[str, str] | None = None
) -> str:
    """One entry on one line: "1 September 2025 declined by Dr A: reason (note); deferred until
    1 December 2025 [Task/id]" (dates as people read them)."""
    words = ruleset.model.texts.history
    parts = [f"{long_iso(entry.when)} {event_words(entry, ruleset)}"]
    if entry.who:
        parts[0] += " " + words.by.format(who=(names or {}).get(entry.who, entry.who))
    if entry.reason:
        parts[0] += f": {entry.reason}"
    if entry.note:
        parts[0] += f" ({entry.note})"
    ends = suppression_words(entry, ruleset)
    return "; ".join([*parts, *([ends] if ends else [])]) + f" [{entry.ref}]"


def card_line(entries: Iterable[HistoryEntry], ruleset: CompiledRuleset, today: date) -> str | None:
    """The card's one line on the latest referral, decline or deferral (None when none):
    e.g. "declined 14 months ago: Patient not interested in IPS at present"."""
    latest = next((e for e in entries if e.event in CARD_EVENTS and e.when), None)
    if latest is None or latest.when is None:
        return None
    words = ruleset.model.texts.history
    fields = {
        "event": event_words(latest, ruleset),
        "ago": ago(date.fromisoformat(latest.when), today, ruleset),
        "reason": latest.reason or "",
    }
    return (words.card_line if latest.reason else words.card_line_no_reason).format(**fields)
