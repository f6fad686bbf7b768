"""The duplicate sweep: after each write, no proposal identifier is held by two live resources.

Conditional create does not stop two concurrent writers (docs: standards.md), so after writing,
every proposal ServiceRequest (the ruleset's IPS code, intent proposal, the proposal identifier
system) and every review Task (task-code approve) is grouped by identifier value. In a group of
several live (not entered-in-error) resources one is kept: one a person has acted on (a
ServiceRequest past draft, or whose Task is past requested), else the oldest by meta.lastUpdated,
then id. The others are marked entered-in-error, a ServiceRequest together with its review Tasks,
in one transaction per identifier: PUTs with If-Match (a resource changed meanwhile fails the
transaction, which changes nothing and is retried by the next sweep), a note naming the kept
resource, and a Provenance (activity UPDATE, the tool's Device as author). A copy a person has acted
on is never retired: it is logged for someone to look at.

The screen ignores entered-in-error records, so a retired copy no longer counts as an open
referral. Logs name resources by id only.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from ips_screen import __version__
from ips_screen.codes import IPS_REFERRAL, IPS_SYSTEM, PROPOSAL_ID_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.errors import ServerError
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.proposals.common import (
    TOOL_NAME,
    agent_type,
    data_operation,
    device_entry,
    device_reference,
    fhir_datetime,
    validated,
)
from ips_screen.ruleset.loader import CompiledRuleset

log = logging.getLogger("ips_screen.writeback")

PAGE_SIZE = 500
UNTOUCHED_TASK = frozenset({"draft", "requested"})  # no person has acted on the review yet


@dataclass(frozen=True)
class Duplicate:
    """One identifier that several live resources held, and what the sweep did about it."""

    resource_type: str  # "ServiceRequest" or "Task"
    identifier: str  # the business identifier's value
    kept: str  # "Type/id"
    retired: tuple[str, ...]  # of resource_type, marked entered-in-error
    retired_tasks: tuple[str, ...] = ()  # the retired ServiceRequests' review Tasks, likewise
    error: str | None = None  # the update failed: nothing was changed for this identifier


def sweep_duplicates(
    client: FhirClient,
    ruleset: CompiledRuleset,
    *,
    now: datetime | None = None,
    tool_version: str = __version__,
) -> list[Duplicate]:
    """Find proposals (ServiceRequests with the ruleset's IPS code, intent proposal) and review
    Tasks whose proposal identifier is held by more than one live resource; keep one and mark the
    others entered-in-error together with their review Tasks.

    Kept: one a person has acted on (not draft, or its Task past requested), else the oldest by
    meta.lastUpdated, then id. A duplicate a person has acted on is never retired (logged)."""
    when = now or datetime.now(UTC)
    code = f"{IPS_SYSTEM}|{_ips_code(ruleset)}"
    requests_ = [
        r
        for r in search_all(client, "ServiceRequest", {"code": code, "intent": "proposal"})
        if _proposal_id(r) and r.get("status") != "entered-in-error"
    ]
    review = {"code": f"{TASK_CODE_SYSTEM}|approve", "intent": "proposal"}
    tasks = [
        t
        for t in search_all(client, "Task", review)
        if _proposal_id(t) and is_review_task(t) and t.get("status") != "entered-in-error"
    ]
    tasks_of: dict[str, list[Resource]] = {}
    for task in tasks:
        tasks_of.setdefault(_focus(task), []).append(task)

    def touched(request: Resource) -> bool:
        return request.get("status") != "draft" or any(
            t.get("status") not in UNTOUCHED_TASK for t in tasks_of.get(reference(request), [])
        )

    done: list[Duplicate] = []
    retired: set[str] = set()
    for value, group in _groups(requests_):
        ranked = sorted(group, key=lambda r: (not touched(r), *age_key(r)))
        extra = [r for r in ranked[1:] if not touched(r)]
        extra_tasks = [t for r in extra for t in tasks_of.get(reference(r), [])]
        dup = _retire(
            client, "ServiceRequest", value, ranked[0], extra, extra_tasks, when, tool_version
        )
        done.append(dup)
        if dup.error is None:
            retired.update(dup.retired + dup.retired_tasks)
    live = {reference(r) for r in requests_} - retired
    tasks = [t for t in tasks if reference(t) not in retired]
    for value, group in _groups(tasks):
        ranked = sorted(
            group,
            key=lambda t: (_focus(t) not in live, t.get("status") in UNTOUCHED_TASK, *age_key(t)),
        )
        extra = [t for t in ranked[1:] if t.get("status") in UNTOUCHED_TASK]
        done.append(_retire(client, "Task", value, ranked[0], extra, [], when, tool_version))
    return [d for d in done if d.retired or d.error]


def _retire(
    client: FhirClient,
    resource_type: str,
    value: str,
    kept: Resource,
    extra: list[Resource],
    extra_tasks: list[Resource],
    now: datetime,
    tool_version: str,
) -> Duplicate:
    kept_ref = reference(kept)
    own = tuple(reference(r) for r in extra)
    tasks = tuple(reference(r) for r in extra_tasks)
    refs = own + tasks
    if not extra:
        log.warning("%s has duplicates that people have acted on: left for review", kept_ref)
        return Duplicate(resource_type, value, kept_ref, ())
    when = fhir_datetime(now)
    note = {
        "authorString": f"{TOOL_NAME} {tool_version}",
        "time": when,
        "text": f"Duplicate of {kept_ref} (same identifier): marked entered-in-error.",
    }
    entries = [_put_entry(r, note, when) for r in [*extra, *extra_tasks]]
    provenance = validated(
        {
            "resourceType": "Provenance",
            "target": [{"reference": ref} for ref in refs],
            "recorded": when,
            "activity": data_operation("UPDATE"),
            "agent": [{"type": agent_type("author"), "who": device_reference(tool_version)}],
            "entity": [{"role": "revision", "what": {"reference": kept_ref}}],
        }
    )
    entries.append({"resource": provenance, "request": {"method": "POST", "url": "Provenance"}})
    entries.append(device_entry(tool_version).to_dict())
    bundle = validated({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    try:
        client.transaction(bundle)
    except ServerError as exc:
        log.warning("could not retire duplicates of %s: %s", kept_ref, exc)
        return Duplicate(resource_type, value, kept_ref, own, tasks, str(exc))
    log.warning(
        "duplicate %s: kept %s, entered-in-error: %s", resource_type, kept_ref, ", ".join(refs)
    )
    return Duplicate(resource_type, value, kept_ref, own, tasks)


def _put_entry(resource: Resource, note: dict, when: str) -> dict:
    updated = copy.deepcopy(resource)
    version = (updated.get("meta") or {}).get("versionId")
    meta = {
        k: v
        for k, v in (updated.pop("meta", None) or {}).items()
        if k not in ("versionId", "lastUpdated")
    }
    if meta:
        updated["meta"] = meta
    updated["status"] = "entered-in-error"
    updated["note"] = [*(updated.get("note") or []), note]
    if updated["resourceType"] == "Task":
        updated["lastModified"] = when
    request = {"method": "PUT", "url": reference(updated)}
    if version:
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": updated, "request": request}


# -- shared with writer.py ---------------------------------------------------------------------


def search_all(client: FhirClient, resource_type: str, params: dict[str, str]) -> list[Resource]:
    """Every match of a search (all pages), resources of that type with an id only."""
    return [
        r
        for r in client.search(resource_type, {**params, "_count": str(PAGE_SIZE)})
        if r.get("resourceType") == resource_type and isinstance(r.get("id"), str)
    ]


def reference(resource: Resource) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def age_key(resource: Resource) -> tuple[float, str]:
    """Sort key, oldest first: meta.lastUpdated (missing: last), then id."""
    stamp = (resource.get("meta") or {}).get("lastUpdated")
    try:
        seconds = datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
    except ValueError:
        seconds = None
    return (seconds if seconds is not None else float("inf"), str(resource.get("id")))


def _proposal_id(resource: Resource) -> str | None:
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == PROPOSAL_ID_SYSTEM:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _groups(resources: list[Resource]) -> list[tuple[str, list[Resource]]]:
    by_value: dict[str, list[Resource]] = {}
    for resource in resources:
        by_value.setdefault(_proposal_id(resource) or "", []).append(resource)
    return sorted((v, g) for v, g in by_value.items() if len(g) > 1)


def is_review_task(task: Resource) -> bool:
    codings = (task.get("code") or {}).get("coding") or []
    return any(c.get("system") == TASK_CODE_SYSTEM and c.get("code") == "approve" for c in codings)


def _focus(task: Resource) -> str:
    focus = (task.get("focus") or {}).get("reference")
    return focus if isinstance(focus, str) else ""


def _ips_code(ruleset: CompiledRuleset) -> str:
    rows = ruleset.codelists[ruleset.model.proposal.request_codelist].rows
    return next((r.code for r in rows if r.system == IPS_SYSTEM), IPS_REFERRAL["code"])
