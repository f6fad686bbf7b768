"""Kind `referral-open`: a referral (ServiceRequest) coded in a codelist in an open status, or
completed within `completed_within_months` (default-ruleset.md, "IPS referral")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ips_screen.dates import MAX_MONTHS
from ips_screen.kinds.base import KindModel, KindSpec
from ips_screen.kinds.context import Context, Finding, constant
from ips_screen.kinds.evidence import OpenReferral, ReferralOpenEvidence
from ips_screen.kinds.records import as_evidence


class ReferralOpen(KindModel):
    kind: Literal["referral-open"]
    codelist: str
    open_statuses: list[str] = Field(default_factory=lambda: ["draft", "active", "on-hold"])
    completed_within_months: int = Field(12, ge=0, le=MAX_MONTHS)


def referral_open(rule: ReferralOpen, ctx: Context) -> Finding:
    codelist = ctx.codelists[rule.codelist]
    start = ctx.window_start(rule.completed_within_months)
    open_statuses = set(rule.open_statuses)
    found = []
    for r in ctx.records:
        if r.resource_type != "ServiceRequest" or codelist.first_match(r.codes) is None:
            continue
        if r.status in open_statuses:
            found.append(OpenReferral(as_evidence(r), r.status or "", r.intent, True))
        elif r.status == "completed" and r.date is not None and r.date >= start:
            found.append(OpenReferral(as_evidence(r), r.status, r.intent, False))
    evidence = ReferralOpenEvidence(tuple(found), rule.completed_within_months)
    finding = Finding(bool(found), tuple(f.record.ref for f in found), evidence)
    return finding if found else constant(rule, lambda: finding)  # none: the same for all


SPECS = (
    KindSpec(
        "referral-open",
        ReferralOpen,
        referral_open,
        windows=lambda rule: (rule.completed_within_months,),
        window_types=lambda rule: ("ServiceRequest",),
        reads=lambda rule: (("ServiceRequest",), (rule.codelist,)),
    ),
)
