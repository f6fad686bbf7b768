"""What the review says about a clinician's decision, in the ruleset's words (`texts.decisions`):
the same sentences for `ips-screen review`, the review page and CDS Hooks feedback.

    long_date(date(2026, 12, 2))                     "2 December 2026"
    labels.decline_window(ruleset, "not-now")        (3, True): 3 months, a deferral
    declined_words(ruleset, task, "not-now", on)     "Deferred Task/1 (...): deferred until ..."
    already_words(ruleset, who, "rejected", when, reason)
                                                     "Dr A Smith declined this on ... at 11:02: ..."

A decline suppresses new proposals while the decline is within the window (the rule counts the
window's last day), so "until" is the decline's date plus the window's months: the first night
after it the patient can be proposed again.
"""

from __future__ import annotations

from datetime import date, datetime

from ips_screen.dates import LONDON, add_months, long_date
from ips_screen.presentation.labels import decline_window, proposal_title, short_name
from ips_screen.ruleset.loader import CompiledRuleset


def before_deciding(ruleset: CompiledRuleset) -> str:
    """The review page's line above the decision forms: what to do first, and what a decline
    does (its usual window and each deferral's), from the ruleset's own `referral-declined`
    rule ("... not suggested again for 12 months, or for 3 months when the reason is ...")."""
    texts = ruleset.model.texts.decisions
    short = short_name(ruleset)
    line = texts.before_deciding.format(short=short)
    usual: int | None = None
    deferrals: list[str] = []
    for code, display in ruleset.model.proposal.decline_reasons.items():
        window = decline_window(ruleset, code)
        if window is None:
            return line
        months, deferring = window
        if deferring:
            deferrals.append(texts.deferral_window.format(months=months, reason=display))
        elif usual is None:
            usual = months
    if usual is None:
        return line
    return f"{line} {texts.decline_windows.format(short=short, months=usual)}{''.join(deferrals)}."


def clock_time(when: datetime) -> str:
    """ "11:02", UK time."""
    return when.astimezone(LONDON).strftime("%H:%M")


def suppressed_until(ruleset: CompiledRuleset, reason_code: str, decided_on: date) -> date | None:
    """The last day a decline on `decided_on` keeps new proposals away (None without a rule)."""
    window = decline_window(ruleset, reason_code)
    return None if window is None else add_months(decided_on, window[0])


def declined_words(ruleset: CompiledRuleset, task: str, reason_code: str, decided_on: date) -> str:
    """The confirmation of a decline: deferred until <date>, or not suggested again for N
    months (until <date>); only the reason without a `referral-declined` rule."""
    texts = ruleset.model.texts.decisions
    reason = ruleset.model.proposal.decline_reasons.get(reason_code, reason_code)
    window = decline_window(ruleset, reason_code)
    if window is None:
        return texts.declined_no_window.format(task=task, reason=reason, short=short_name(ruleset))
    months, deferred = window
    template = texts.deferred if deferred else texts.declined
    return template.format(
        task=task,
        reason=reason,
        months=months,
        until=long_date(add_months(decided_on, months)),
        short=short_name(ruleset),
    )


def accepted_words(
    ruleset: CompiledRuleset,
    *,
    task: str,
    order: str,
    careplan: str,
    service: str,
    agreement: str,
    priority: str,
) -> str:
    """The confirmation of an accepted proposal."""
    return ruleset.model.texts.decisions.accepted.format(
        task=task,
        order=order,
        careplan=careplan,
        service=service,
        agreement=agreement,
        priority=priority,
    )


def already_words(
    ruleset: CompiledRuleset, who: str, status: str, when: datetime | None, reason: str | None
) -> str:
    """Who did what to a review and when: "<who> declined this on <date> at <time>: <reason>"."""
    texts = ruleset.model.texts.decisions
    day = long_date(when.astimezone(LONDON).date()) if when else "an unknown date"
    time = clock_time(when) if when else "an unknown time"
    if status == "completed":
        return texts.already_accepted.format(who=who, date=day, time=time)
    if status in ("rejected", "cancelled") and reason:
        return texts.already_declined.format(who=who, date=day, time=time, reason=reason)
    return texts.already_other.format(who=who, date=day, time=time, status=status)


def agreement_words(ruleset: CompiledRuleset) -> tuple[str, str]:
    """(the page's agreement checkbox label, the error when it is not ticked)."""
    texts, short = ruleset.model.texts.decisions, short_name(ruleset)
    return texts.agreement_check.format(short=short), texts.agreement_missing.format(short=short)


def agreement_record(ruleset: CompiledRuleset) -> str:
    """The text of the Observation recording the patient's agreement."""
    return ruleset.model.texts.decisions.agreement_record.format(title=proposal_title(ruleset))
