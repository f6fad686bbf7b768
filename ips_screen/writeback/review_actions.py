"""A clinician's decision on a proposal, written to the FHIR server: accept or decline. The
resources written are built by `ips_screen.proposals.review` (pure builders).

Writes are one transaction each, with If-Match on the review Task and on the proposal, so a
concurrent change to either makes the whole transaction fail (`ConflictError`, nothing changed).
A review that is already decided, an unknown decline reason or resources that cannot be built are
a `UserError`. Logs name resource ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ips_screen.errors import ConflictError, UserError
from ips_screen.facts.extract import reference_to
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.labels import care_plan_words
from ips_screen.proposals.review import accept_resources, decline_resources, review_transaction
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.writeback.review_read import (
    Loaded,
    in_codelists,
    load_review,
    pain_codelists,
    read_resource,
    references,
)

log = logging.getLogger("ips_screen.writeback")


@dataclass(frozen=True)
class AcceptResult:
    task: str
    proposal: str
    order: str
    careplan: str
    provenance: str
    pain_conditions: tuple[str, ...]
    fit_notes: tuple[str, ...]


@dataclass(frozen=True)
class DeclineResult:
    task: str
    proposal: str
    provenance: str
    reason_code: str


def _open(loaded: Loaded) -> None:
    task, sr = loaded.task, loaded.proposal
    if task.get("status") != "requested":
        raise UserError(f"Task/{task['id']} is already {task.get('status')}")
    if sr.get("status") != "draft":
        raise UserError(f"ServiceRequest/{sr['id']} is already {sr.get('status')}")


def _write(
    client: FhirClient, loaded: Loaded, build: Callable[[], dict], version: str
) -> list[str]:
    """Build the resources and post the review transaction; the "Type/id" of each entry."""
    try:
        resources = build()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    tid = loaded.task["id"]
    try:
        response = client.transaction(review_transaction(resources, tool_version=version))
    except ConflictError as exc:
        raise ConflictError(
            f"Task/{tid} was changed by someone else since it was read; nothing was changed. "
            f"Run `ips-screen review show {tid}` and try again."
        ) from exc
    out = []
    for entry in response.get("entry") or ():
        location = (entry.get("response") or {}).get("location") or ""
        written = entry.get("resource") or {}
        fallback = f"{written.get('resourceType')}/{written.get('id')}" if written else ""
        out.append(reference_to(location.split("/_history/")[0]) or fallback)
    return out


def accept(
    client: FhirClient,
    task: str | Loaded,
    *,
    by: str,
    now: datetime,
    tool_version: str,
    ruleset: CompiledRuleset | None = None,
) -> AcceptResult:
    """Accept a proposal: order, care plan, Task and proposal completed, Provenance.

    `task` is a Task id, or a review read earlier with `load_review` (whose versions If-Match
    checks). The care plan addresses the proposal's reasonReference Conditions in the pain
    criterion's codelists (every Condition there when `ruleset` is None).
    """
    loaded = task if isinstance(task, Loaded) else load_review(client, task)
    _open(loaded)
    sr = loaded.proposal
    conditions = [r for r in references(sr.get("reasonReference")) if r.startswith("Condition/")]
    if ruleset is not None:
        lists = pain_codelists(ruleset)
        conditions = [
            r for r in conditions if in_codelists(ruleset, lists, read_resource(client, r) or {})
        ]
    fit_notes = references(sr.get("supportingInfo"))

    def build() -> dict:
        return accept_resources(
            sr,
            loaded.task,
            by=by,
            now=now,
            tool_version=tool_version,
            pain_conditions=conditions,
            fit_notes=fit_notes,
            care_plan=care_plan_words(ruleset or load_ruleset()),
        )

    refs = _write(client, loaded, build, tool_version)
    _, order, careplan, task_ref, proposal, provenance = refs
    log.info("accepted %s: %s, %s", task_ref, order, careplan)
    return AcceptResult(
        task_ref, proposal, order, careplan, provenance, tuple(conditions), tuple(fit_notes)
    )


def decline(
    client: FhirClient,
    task: str | Loaded,
    *,
    by: str,
    reason_code: str,
    note: str | None = None,
    now: datetime,
    tool_version: str,
    ruleset: CompiledRuleset | None = None,
) -> DeclineResult:
    """Decline a proposal: Task rejected with a coded reason, proposal revoked, Provenance.

    `task` as for `accept`. The reasons are the ruleset's `proposal.decline_reasons` (the
    default ruleset's when `ruleset` is None). An unknown reason, or "other" with no note, is a
    UserError.
    """
    reasons = (ruleset or load_ruleset()).model.proposal.decline_reasons
    if reason_code not in reasons:
        raise UserError(f"unknown decline reason {reason_code!r}; use one of: {', '.join(reasons)}")
    if reason_code == "other" and not (note and note.strip()):
        raise UserError("decline reason 'other' needs --note")
    loaded = task if isinstance(task, Loaded) else load_review(client, task)
    _open(loaded)

    def build() -> dict:
        return decline_resources(
            loaded.proposal,
            loaded.task,
            by=by,
            reason_code=reason_code,
            reasons=reasons,
            note=note,
            now=now,
            tool_version=tool_version,
        )

    refs = _write(client, loaded, build, tool_version)
    _, task_ref, proposal, provenance = refs
    log.info("declined %s (%s)", task_ref, reason_code)
    return DeclineResult(task_ref, proposal, provenance, reason_code)
