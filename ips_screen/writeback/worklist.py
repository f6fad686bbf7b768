"""Working the list of reviews: the owner filter by name (not FHIR syntax) and the counts of open,
deferred, accepted and declined reviews in the last 30 days.

The order of the list itself (priority, early first, then oldest waiting first) is
`review_read.open_reviews`'s. Logs name resource ids only.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta

from ips_screen.codes import TASK_CODE_SYSTEM
from ips_screen.dates import parse_fhir_date
from ips_screen.facts.extract import codings, reference_to
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.presentation.history import declined_rule
from ips_screen.ruleset.codelists import normalise
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback.review_read import ReviewItem, open_reviews

REFERENCE = re.compile(r"^(Organization|PractitionerRole|Practitioner)/[A-Za-z0-9\-.]{1,64}$")
COUNT_DAYS = 30
_DECIDED = ("completed", "rejected", "cancelled")


@dataclass(frozen=True)
class Counts:
    """Reviews open now, and decided in the last 30 days (a deferral is a decline whose reason
    is one of the ruleset's `deferrals`)."""

    open: int = 0
    deferred: int = 0
    accepted: int = 0
    declined: int = 0


def owner_refs(client: FhirClient, text: str) -> set[str]:
    """The owners a filter text names: a reference as given, else the Practitioners and
    Organizations whose name matches (the server's `name` search), and the PractitionerRoles
    of those Practitioners. Empty when nothing matches."""
    text = text.strip()
    if REFERENCE.match(text):
        return {text}
    found: set[str] = set()
    for rtype in ("Practitioner", "Organization"):
        for resource in client.search(rtype, [("name", text)]):
            if resource.get("resourceType") == rtype and resource.get("id"):
                found.add(f"{rtype}/{resource['id']}")
    people = sorted(r for r in found if r.startswith("Practitioner/"))
    if people:
        for resource in client.search("PractitionerRole", [("practitioner", ",".join(people))]):
            if resource.get("resourceType") == "PractitionerRole" and resource.get("id"):
                found.add(f"PractitionerRole/{resource['id']}")
    return found


def own_refs(client: FhirClient, user: str) -> set[str]:
    """What a signed-in clinician's own reviews may be owned by: their Practitioner and its
    PractitionerRoles, or their PractitionerRole and its Practitioner."""
    found = {user}
    if user.startswith("Practitioner/"):
        for role in client.search("PractitionerRole", [("practitioner", user)]):
            if role.get("resourceType") == "PractitionerRole" and role.get("id"):
                found.add(f"PractitionerRole/{role['id']}")
    elif user.startswith("PractitionerRole/"):
        rid = user.removeprefix("PractitionerRole/")
        for role in client.search("PractitionerRole", [("_id", rid)]):
            person = reference_to(role.get("practitioner"))
            if role.get("resourceType") == "PractitionerRole" and person:
                found.add(person)
    return found


def owned_by(items: list[ReviewItem], owners: Collection[str] | None) -> list[ReviewItem]:
    """The items whose owner is one of `owners` (all of them when `owners` is None)."""
    return items if owners is None else [i for i in items if i.owner in owners]


def reviews_owned_by(
    client: FhirClient, owners: Collection[str] | None, *, priority: str | None = None
) -> list[ReviewItem]:
    """The open reviews (`open_reviews`, in its order) owned by one of `owners` (everyone's when
    None); a single owner is asked of the server, several are picked out here."""
    if owners is not None and not owners:
        return []
    single = next(iter(owners)) if owners is not None and len(owners) == 1 else None
    return owned_by(open_reviews(client, owner=single, priority=priority), owners)


def _deferral_codes(ruleset: CompiledRuleset) -> set[tuple[str, str]]:
    rule = declined_rule(ruleset)
    return {normalise(d.system, d.code) for d in (rule.deferrals if rule else ())}


def review_counts(
    client: FhirClient,
    items: list[ReviewItem],
    ruleset: CompiledRuleset,
    today: date,
    *,
    owners: Collection[str] | None = None,
) -> Counts:
    """Counts for the worklist: `items` are the open reviews shown; the decided ones are the
    review Tasks (owned by one of `owners`, when given) decided in the last 30 days, dated by
    lastModified else authoredOn (meta.lastUpdated only narrows the search: a server rewrites it,
    never to an earlier time)."""
    since = today - timedelta(days=COUNT_DAYS)
    params = [
        ("code", f"{TASK_CODE_SYSTEM}|approve"),
        ("status", ",".join(_DECIDED)),
        ("_lastUpdated", f"ge{since.isoformat()}"),
    ]
    deferrals = _deferral_codes(ruleset)
    tally = {"accepted": 0, "declined": 0, "deferred": 0}
    seen: set[str] = set()
    for task in client.search("Task", params):
        if task.get("resourceType") != "Task" or task.get("id") in seen:
            continue
        seen.add(task.get("id", ""))
        if owners is not None and reference_to(task.get("owner")) not in owners:
            continue
        decided = parse_fhir_date(task.get("lastModified") or task.get("authoredOn"))
        if decided is None or not since <= decided <= today:
            continue
        tally[_outcome(task, deferrals)] += 1
    return Counts(open=len(items), **tally)


def _outcome(task: Resource, deferrals: set[tuple[str, str]]) -> str:
    if task.get("status") == "completed":
        return "accepted"
    reasons = set(codings(task.get("statusReason")))
    return "deferred" if reasons & deferrals else "declined"
