"""Follow-up of accepted referrals: the IPS orders this tool made on acceptance that the IPS
service has not answered after a number of weeks, so a referral cannot silently go nowhere.

An order of this tool is a ServiceRequest with intent `order` and an identifier in the proposal
identifier system: what `review accept`, the review page and the card's feedback write (`basedOn`
the proposal), and the order the card's suggestion creates in the EHR (no `basedOn`); other
fields it may carry do not matter. It is unanswered when, N weeks or more after it was accepted
(its `authoredOn`):

- its status is still `active`, and no version in its history (`_history`) ever had another
  status (a service that put it on hold and back has answered);
- no Task names it (`based-on` or `focus`) and no Communication is `based-on` it.

`meta.lastUpdated` is never used: servers rewrite it on every load or edit. An active order with
no usable `authoredOn` cannot be aged: it is listed, unanswered or not yet, with no age, rather
than left out. Only ids, dates and ages are returned (for batch outputs and logs as for a
terminal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.errors import ServerError
from ips_screen.facts.extract import reference_to
from ips_screen.fhir.client import FhirClient, Resource

log = logging.getLogger("ips_screen.writeback")

FOLLOWUP_WEEKS = 6  # the default wait before an unanswered referral is listed


@dataclass(frozen=True)
class Unanswered:
    """An accepted referral with no answer from the service: ids and its age only."""

    order: str  # "ServiceRequest/<id>"
    proposal: str | None  # the proposal it is based on (none for the card's suggested order)
    patient: str | None
    accepted: str | None  # the order's authoredOn, as written
    days: int | None  # whole days since acceptance; None when authoredOn is missing or unusable

    @property
    def weeks(self) -> int | None:
        return None if self.days is None else self.days // 7


def is_tool_order(sr: Resource) -> bool:
    """Whether the resource is an order this tool made on accepting a proposal."""
    return (
        sr.get("resourceType") == "ServiceRequest"
        and sr.get("intent") == "order"
        and any(
            isinstance(i, dict) and i.get("system") == PROPOSAL_ID_SYSTEM
            for i in sr.get("identifier") or ()
        )
    )


def _accepted(sr: Resource) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(sr.get("authoredOn") or ""))
    except ValueError:
        return None
    return when if when.tzinfo else None  # a date alone has no time zone: not comparable


def answer(client: FhirClient, order: Resource) -> str | None:
    """What shows the service answered the order ("status ...", "Task/<id>",
    "Communication/<id>"), or None when nothing does."""
    ref = f"ServiceRequest/{order['id']}"
    if order.get("status") != "active":
        return f"status {order.get('status')}"
    try:
        for version in client.history("ServiceRequest", order["id"]):
            if version.get("status") != "active":
                return f"status {version.get('status')} in its history"
    except ServerError as exc:
        if not exc.refused_as_asked():  # not answering: the searches below would fail too
            raise
        log.warning("follow-up: history of %s unreadable (%s)", ref, exc)  # no _history
    searches = (("Task", "based-on"), ("Task", "focus"), ("Communication", "based-on"))
    for rtype, param in searches:
        for found in client.search(rtype, [(param, ref), ("_count", "1")]):
            if found.get("resourceType") == rtype:
                return f"{rtype}/{found.get('id')}"
    return None


def unanswered_referrals(client: FhirClient, *, now: datetime, weeks: int) -> list[Unanswered]:
    """The orders of this tool still active and unanswered `weeks` weeks or more after their
    acceptance, oldest first (then by id), then those that cannot be aged."""
    cutoff = now - timedelta(weeks=weeks)
    out = []
    params = [
        ("identifier", f"{PROPOSAL_ID_SYSTEM}|"),  # the tool's own, not every order of the practice
        ("intent", "order"),
        ("status", "active"),
    ]
    for sr in client.search("ServiceRequest", params):
        if not is_tool_order(sr) or sr.get("status") != "active":
            continue
        accepted = _accepted(sr)
        if accepted is None:
            log.warning("follow-up: ServiceRequest/%s has no usable authoredOn", sr.get("id"))
        elif accepted > cutoff:
            continue
        answered = answer(client, sr)
        if answered is not None:
            log.info("follow-up: ServiceRequest/%s answered (%s)", sr["id"], answered)
            continue
        proposals = [reference_to(b) for b in sr.get("basedOn") or ()]
        out.append(
            Unanswered(
                order=f"ServiceRequest/{sr['id']}",
                proposal=next((p for p in proposals if p), None),
                patient=reference_to(sr.get("subject")),
                accepted=str(sr["authoredOn"]) if sr.get("authoredOn") else None,
                days=(now - accepted).days if accepted is not None else None,
            )
        )
    return sorted(out, key=lambda u: (u.days is None, -(u.days or 0), u.order))
