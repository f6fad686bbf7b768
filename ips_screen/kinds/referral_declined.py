"""Kind `referral-declined`: a proposal declined recently (default-ruleset.md, "IPS referral",
"Deferral").

A proposal with a rejected or cancelled review Task is dated by that Task alone (lastModified,
else authoredOn; a server rewrites the request's meta.lastUpdated on every load or edit); only a
revoked request with no such Task is dated by its own change date. The window is `within_months`,
or that of the `deferrals` entry matching the Task's statusReason.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from ips_screen.code_keys import normalise
from ips_screen.dates import MAX_MONTHS
from ips_screen.facts.model import Record
from ips_screen.kinds.base import KindModel, KindSpec, Strict
from ips_screen.kinds.context import Context, Finding, constant
from ips_screen.kinds.evidence import Decline, ReferralDeclinedEvidence


class Deferral(Strict):
    """A decline reason (a coding of the review Task's statusReason) with its own window."""

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    within_months: int = Field(
        ge=0, le=MAX_MONTHS, description="months this reason suppresses new proposals"
    )


class ReferralDeclined(KindModel):
    """A declined proposal, dated by its rejected/cancelled review Task alone when it has one,
    else (revoked request) by the request's change date; recent within `within_months`, or
    within the `deferrals` window of the Task's statusReason."""

    kind: Literal["referral-declined"]
    codelist: str
    task_statuses: list[str] = Field(default_factory=lambda: ["rejected", "cancelled"])
    request_statuses: list[str] = Field(default_factory=lambda: ["revoked"])
    within_months: int = Field(12, ge=0, le=MAX_MONTHS)
    deferrals: list[Deferral] = Field(
        default_factory=list, description="decline reasons with a window other than within_months"
    )


def referral_declined(rule: ReferralDeclined, ctx: Context) -> Finding:
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
    found: list[Decline] = []
    for r in requests.values():
        tasks = declines.get(r.ref)
        if tasks:
            for task in tasks:
                months, code = _decline_window(rule, task)
                if _within(task.changed, months, ctx):
                    found.append(Decline(task.ref, task.status, task.changed, months, code, True))
        elif r.status in rule.request_statuses and _within(r.changed, rule.within_months, ctx):
            found.append(Decline(r.ref, r.status, r.changed, rule.within_months, None, False))
    evidence = ReferralDeclinedEvidence(
        tuple(found), rule.within_months, tuple((d.code, d.within_months) for d in rule.deferrals)
    )
    finding = Finding(bool(found), tuple(dict.fromkeys(d.ref for d in found)), evidence)
    return finding if found else constant(rule, lambda: finding)  # none: the same for all


def _within(when: date | None, months: int, ctx: Context) -> bool:
    return when is not None and ctx.window_start(months) <= when <= ctx.t


def _decline_window(rule: ReferralDeclined, task: Record) -> tuple[int, str | None]:
    """(months, deferral reason code or None) of the window a declined review Task applies."""
    reasons = set(task.status_reason)
    for deferral in rule.deferrals:
        if normalise(deferral.system, deferral.code) in reasons:
            return deferral.within_months, deferral.code
    return rule.within_months, None


def _windows(rule: ReferralDeclined) -> tuple[int, ...]:
    return (rule.within_months, *(d.within_months for d in rule.deferrals))


SPECS = (
    KindSpec(
        "referral-declined",
        ReferralDeclined,
        referral_declined,
        windows=_windows,
        window_types=lambda rule: ("ServiceRequest", "Task"),  # a request, or its review Task
        reads=lambda rule: (("ServiceRequest",), (rule.codelist,)),  # no request, no decline
    ),
)
