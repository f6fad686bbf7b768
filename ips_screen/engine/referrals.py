"""The referral kinds: an IPS referral already open, or a proposal declined recently.

See default-ruleset.md, "Precise definitions" ("IPS referral", "Deferral").
"""

from __future__ import annotations

from datetime import date

from ips_screen.engine.findings import Context, Finding
from ips_screen.facts.model import Record
from ips_screen.ruleset.codelists import normalise
from ips_screen.ruleset.model import ReferralDeclined, ReferralOpen


def referral_open(rule: ReferralOpen, ctx: Context) -> Finding:
    codelist = ctx.codelists[rule.codelist]
    start = ctx.window_start(rule.completed_within_months)
    open_statuses = set(rule.open_statuses)
    found = []
    for r in ctx.records:
        if r.resource_type != "ServiceRequest" or codelist.first_match(r.codes) is None:
            continue
        if r.status in open_statuses:
            found.append((r, f"{r.status} ({r.intent or 'no intent'})"))
        elif r.status == "completed" and r.date is not None and r.date >= start:
            found.append((r, f"completed {r.date.isoformat()}"))
    if found:
        detail = "; ".join(f"{r.ref} {what}" for r, what in found)
        return Finding(True, tuple(r.ref for r, _ in found), f"IPS referral open: {detail}")
    return Finding(False, (), "no open or recent IPS referral")


def referral_declined(rule: ReferralDeclined, ctx: Context) -> Finding:
    """A declined IPS proposal within its window (default-ruleset.md, "IPS referral", "Deferral").

    A proposal with a rejected or cancelled review Task is dated by that Task alone (lastModified,
    else authoredOn; a server rewrites the request's meta.lastUpdated on every load or edit); only
    a revoked request with no such Task is dated by its own change date. The window is
    `within_months`, or that of the `deferrals` entry matching the Task's statusReason.
    """
    codelist = ctx.codelists[rule.codelist]
    requests = {
        r.ref: r
        for r in ctx.records
        if r.resource_type == "ServiceRequest" and codelist.first_match(r.codes) is not None
    }
    declines: dict[str, list[Record]] = {}
    for task in ctx.records:
        if task.resource_type != "Task" or task.focus not in requests:
            continue
        if task.status in rule.task_statuses:
            declines.setdefault(task.focus, []).append(task)
    found: list[tuple[str, str]] = []
    for r in requests.values():
        tasks = declines.get(r.ref)
        if tasks:
            for task in tasks:
                months, why = _decline_window(rule, task)
                if _within(task.changed, months, ctx):
                    text = f"{task.ref} {task.status} {task.changed.isoformat()}"
                    found.append((task.ref, f"{text} ({why}: {months}-month window)"))
        elif r.status in rule.request_statuses and _within(r.changed, rule.within_months, ctx):
            text = f"{r.ref} {r.status} {r.changed.isoformat()}"
            found.append((r.ref, f"{text} ({rule.within_months}-month window)"))
    if found:
        refs = tuple(dict.fromkeys(ref for ref, _ in found))
        return Finding(True, refs, "declined: " + "; ".join(text for _, text in found))
    shorter = "".join(f" ({d.within_months} for {d.code})" for d in rule.deferrals)
    return Finding(
        False, (), f"no IPS proposal declined in the last {rule.within_months} months{shorter}"
    )


def _within(when: date | None, months: int, ctx: Context) -> bool:
    return when is not None and ctx.window_start(months) <= when <= ctx.t


def _decline_window(rule: ReferralDeclined, task: Record) -> tuple[int, str]:
    """(months, plain words) of the window a declined review Task suppresses proposals for."""
    reasons = set(task.status_reason)
    for deferral in rule.deferrals:
        if normalise(deferral.system, deferral.code) in reasons:
            return deferral.within_months, f"deferred, {deferral.code}"
    return rule.within_months, "declined"
