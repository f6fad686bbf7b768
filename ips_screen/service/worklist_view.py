"""What the review page's worklist and task page show beyond the reviews themselves: who each
patient is, the list narrowed to the signed-in clinician (or the whole practice), an owner named
in plain words, a search by name or NHS number, the counts, and the rows of a patient's IPS
history. Reading and shaping only; the routes are review_page.py's. Logs name ids only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ips_screen.dates import long_iso
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.history import event_words, suppression_words
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback import review
from ips_screen.writeback.ips_history import PatientHistory
from ips_screen.writeback.patient_identity import PatientIdentity, read_identities
from ips_screen.writeback.worklist import (
    Counts,
    own_refs,
    owner_refs,
    review_counts,
    reviews_owned_by,
)


@dataclass(frozen=True)
class WorklistView:
    items: list[review.ReviewItem]
    identities: dict[str, PatientIdentity] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    owner_error: str | None = None


def worklist_view(
    client: FhirClient,
    ruleset: CompiledRuleset,
    today: date,
    *,
    user: str,
    scope: str,
    owner: str,
    query: str,
    priority: str | None,
) -> WorklistView:
    """The open reviews to show: owned by the `owner` named (a name or Type/id), else by the
    signed-in `user` when `scope` is "mine", else the whole practice's; then those whose patient
    `query` finds (name or NHS number). An owner name that matches nobody shows nothing and says
    so."""
    owners: set[str] | None = None
    error = None
    if owner:
        owners = owner_refs(client, owner)
        if not owners:
            error = f"No clinician, team or practice is called \u201c{owner}\u201d."
    elif scope == "mine":
        owners = own_refs(client, user)
    items = reviews_owned_by(client, owners, priority=priority)
    identities = read_identities(client, [i.patient for i in items], today)
    if query:
        items = [
            i for i in items if i.patient in identities and identities[i.patient].matches(query)
        ]
    counts = review_counts(client, items, ruleset, today, owners=owners)
    return WorklistView(items, identities, counts, error)


@dataclass(frozen=True)
class HistoryRow:
    when: str
    event: str
    who: str
    reason: str
    note: str
    ends: str
    ref: str
    kind: str  # the event's name, for styling


def history_rows(history: PatientHistory, ruleset: CompiledRuleset) -> list[HistoryRow]:
    """The IPS history as table rows, newest first, in the ruleset's words."""
    return [
        HistoryRow(
            when=long_iso(e.when, "undated"),
            event=event_words(e, ruleset),
            who=history.who(e) or "",
            reason=e.reason or "",
            note=e.note or "",
            ends=suppression_words(e, ruleset) or "",
            ref=e.ref,
            kind=e.event,
        )
        for e in history.entries
    ]
