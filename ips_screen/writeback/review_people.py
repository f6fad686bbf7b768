"""Who takes part in a decision, checked on the FHIR server: the clinician (`--by`, the signed-in
user, the card's userId) must be a Practitioner or PractitionerRole the server has, the IPS
service a HealthcareService or Organization it has; and, for a review already decided, who
decided it, when and why (`decided_words`), in the ruleset's words.

Errors are one line naming the reference. A clinician's name is shown to clinicians only (the
CLI, the review page); logs keep resource ids.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ips_screen.errors import ConfigError, UserError
from ips_screen.facts.extract import reference_to
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.presentation.decision_words import already_words
from ips_screen.proposals.review import IPS_SERVICE
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback.review_read import Loaded, read_resource


class UnknownClinician(UserError):
    """The clinician deciding is not a Practitioner(Role) the FHIR server has."""


class UnknownService(UserError):
    """The configured IPS service is not on the FHIR server."""


NO_SERVICE = (
    'no IPS service configured: set [referral] ips_service = "HealthcareService/<id>" (or '
    "Organization/<id>) in practice.toml (--config) or serve.toml"
)


def resolve_clinician(client: FhirClient, by: str) -> Resource:
    """The Practitioner or PractitionerRole `by` names, read from the server; UserError if the
    server does not have it."""
    if not by.startswith(("Practitioner/", "PractitionerRole/")):
        raise UserError(f"by must be Practitioner/<id> or PractitionerRole/<id>, not {by!r}")
    found = read_resource(client, by)
    if found is None or found.get("resourceType") not in ("Practitioner", "PractitionerRole"):
        raise UnknownClinician(
            f"{by} not found on the FHIR server: the clinician must be recorded there"
        )
    return found


def resolve_service(client: FhirClient, service: str | None) -> Resource:
    """The practice's IPS service (HealthcareService or Organization) read from the server;
    ConfigError when none is configured, UserError when the server does not have it."""
    if service is None:
        raise ConfigError(NO_SERVICE)
    if not IPS_SERVICE.match(service):
        raise ConfigError(
            f"ips_service must be HealthcareService/<id> or Organization/<id>: {service!r}"
        )
    found = read_resource(client, service)
    if found is None:
        raise UnknownService(f"the IPS service {service} is not on the FHIR server")
    return found


def person_name(resource: Resource | None) -> str | None:
    """ "Dr A Smith": prefix, initials of the given names and family name of the first name."""
    names = (resource or {}).get("name") or ()
    name = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), None)
    name = name or next((n for n in names if isinstance(n, dict)), None)
    if name is None:
        return None
    if name.get("family"):
        initials = " ".join(g[0] for g in name.get("given") or () if g)
        parts = [*(name.get("prefix") or ()), initials, name["family"]]
        return " ".join(p for p in parts if p)
    return name.get("text") or None


def service_name(resource: Resource) -> str:
    """The IPS service's name as recorded on the server (else its reference)."""
    return resource.get("name") or f"{resource['resourceType']}/{resource.get('id')}"


def _who(client: FhirClient, ref: str | None) -> str:
    if ref is None:
        return "Someone"
    found = read_resource(client, ref)
    if found is not None and found.get("resourceType") == "PractitionerRole":
        practitioner = reference_to(found.get("practitioner"))
        found = read_resource(client, practitioner) if practitioner else None
    return person_name(found) or ref


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _decider(client: FhirClient, task: Resource) -> tuple[str | None, datetime | None]:
    """(the clinician author of the latest Provenance targeting the Task, when it was recorded)
    (the screen's own Provenance, authored by the tool's Device, does not count); else the
    latest note's author and the Task's lastModified."""
    tid = f"Task/{task['id']}"
    latest: tuple[datetime, str] | None = None
    for prov in client.search("Provenance", {"target": tid}):
        if prov.get("resourceType") != "Provenance":
            continue
        if tid not in {reference_to(t) for t in prov.get("target") or ()}:
            continue
        when = _instant(prov.get("recorded"))
        author = next(
            (
                who
                for a in prov.get("agent") or ()
                if any(c.get("code") == "author" for c in (a.get("type") or {}).get("coding", ()))
                and (who := reference_to(a.get("who")) or "").startswith("Practitioner")
            ),
            None,
        )
        if when is not None and author and (latest is None or when > latest[0]):
            latest = (when, author)
    if latest is not None:
        return latest[1], latest[0]
    notes = [n for n in task.get("note") or () if isinstance(n, dict)]
    author = reference_to(notes[-1].get("authorReference")) if notes else None
    return author, _instant(task.get("lastModified"))


def decided_words(client: FhirClient, loaded: Loaded, ruleset: CompiledRuleset) -> str:
    """ "Dr A Smith declined this on 2 December 2026 at 11:02: <reason>." for a decided review."""
    task, proposal = loaded.task, loaded.proposal
    status = task.get("status") or ""
    if status == "requested":  # the proposal changed without its Task: name the proposal's state
        status = {"revoked": "rejected"}.get(proposal.get("status") or "", proposal.get("status"))
    author, when = _decider(client, task)
    reason = (task.get("statusReason") or {}).get("text")
    return already_words(ruleset, _who(client, author), status or "changed", when, reason)
