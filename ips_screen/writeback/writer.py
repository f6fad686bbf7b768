"""Write proposals to the practice's FHIR server: one writer at a time, never a duplicate left.

Conditional create is not safe under concurrency on common servers (docs: standards.md), so:
1. `PracticeLock`: one ips-screen writer per FHIR server on this machine (an exclusive `flock`
   on a file in the lock dir, keyed by the normalised base URL, released by the kernel if the
   process dies), and `ServerLease`: one writer per server across machines (a lease resource on
   the server, taken with If-Match, renewed while writing, expiring if its holder dies). A
   second writer gets `LockHeld` (exit 7).
2. `write_proposals`: for each proposed patient, a lookup of the proposal's deterministic
   identifier, then one transaction (`build_patient_transaction`) only when it is absent. A
   transaction is atomic, so a failure leaves nothing half-written: the patient is reported
   failed and the next one is written. A proposal left without its review Task (a killed run on a
   server without atomic transactions) gets the Task and a Provenance.
3. `sweep_duplicates`, after each write: an identifier held by several live proposals (or review
   Tasks) keeps one and marks the others entered-in-error (If-Match, one transaction per
   identifier, with a Provenance naming the tool).

Logs name resources by id only.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ips_screen.engine.decision import Decision
from ips_screen.errors import ServerError, UserError
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.proposals.build import (
    build_patient_transaction,
    proposal_entries,
    proposal_identifier,
)
from ips_screen.proposals.common import Entry, device_entry, transaction
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback.lease import ServerLease
from ips_screen.writeback.lock import PracticeLock, default_lock_path, state_dir
from ips_screen.writeback.sweep import (
    Duplicate,
    age_key,
    is_review_task,
    reference,
    search_all,
    sweep_duplicates,
)

__all__ = [
    "Duplicate",
    "PatientResult",
    "PracticeLock",
    "ServerLease",
    "WriteReport",
    "check_owner",
    "default_lock_path",
    "state_dir",
    "sweep_duplicates",
    "write_proposals",
]

log = logging.getLogger("ips_screen.writeback")

_OWNER_RE = re.compile(r"^(Organization|PractitionerRole|Practitioner)/[A-Za-z0-9\-.]{1,64}$")
_LOCATION_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

Status = Literal["created", "existing", "repaired", "failed"]


def check_owner(value: str | None) -> str | None:
    """A configured Task owner, checked: Organization/, PractitionerRole/ or Practitioner/<id>."""
    if value is not None and not _OWNER_RE.match(value):
        raise UserError(
            "--owner must be Organization/<id>, PractitionerRole/<id> or Practitioner/<id>, "
            f"not {value!r}"
        )
    return value


@dataclass(frozen=True)
class PatientResult:
    patient: str  # "Patient/<id>"
    status: Status
    service_request: str | None = None  # "ServiceRequest/<id>" when known
    message: str | None = None


@dataclass
class WriteReport:
    """What a write did, patient by patient, and what the duplicate sweep after it did."""

    results: list[PatientResult] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    sweep_error: str | None = None

    def _count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def created(self) -> int:
        return self._count("created")

    @property
    def existing(self) -> int:
        return self._count("existing")

    @property
    def repaired(self) -> int:
        return self._count("repaired")

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [(r.patient, r.message or "") for r in self.results if r.status == "failed"]

    @property
    def duplicates_resolved(self) -> int:
        return sum(len(d.retired) for d in self.duplicates if d.error is None)

    @property
    def ok(self) -> bool:
        return not self.failed and self.sweep_error is None

    def summary_line(self) -> str:
        return (
            f"Wrote {self.created} new proposals ({self.existing} already present, "
            f"{self.duplicates_resolved} duplicates resolved, {len(self.failed)} failed)"
        )


# -- writing ----------------------------------------------------------------------------------


def write_proposals(
    client: FhirClient,
    decisions: Iterable[Decision],
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    owner: str | None = None,
    tool_version: str,
    progress: Callable[[int], None] | None = None,
    sweep: bool = True,
    lease: ServerLease | None = None,
) -> WriteReport:
    """Write the proposal of every `propose` decision (in patient order) that is not on the
    server yet, then (unless `sweep` is False) resolve duplicates. Never raises for one patient's
    failure: see `WriteReport.failed` and `WriteReport.ok`. `lease`, the server's write lease the
    caller holds, is renewed as writing goes on; `LockHeld` when another writer took it. The
    summary line is logged for a whole write (with the sweep); a caller writing in parts logs
    its own."""
    report = WriteReport()
    proposed = sorted((d for d in decisions if d.outcome == "propose"), key=lambda d: d.patient)
    for n, decision in enumerate(proposed, start=1):
        if lease is not None:
            lease.renew()
        result = _write_one(client, decision, ruleset, now, owner, tool_version)
        level = logging.WARNING if result.status == "failed" else logging.DEBUG
        log.log(level, "%s: %s %s", decision.patient, result.status, result.message or "")
        report.results.append(result)
        if progress and n % 100 == 0:
            progress(n)
    if sweep:
        sweep_into(report, client, ruleset, now=now, tool_version=tool_version, lease=lease)
        log.info("%s", report.summary_line())
    return report


def sweep_into(
    report: WriteReport,
    client: FhirClient,
    ruleset: CompiledRuleset,
    *,
    now: datetime,
    tool_version: str,
    lease: ServerLease | None = None,
) -> None:
    """Resolve duplicate proposals on the server (`sweep_duplicates`), noting in `report` what
    was resolved and what could not be."""
    if lease is not None:
        lease.renew()
    try:
        report.duplicates = sweep_duplicates(client, ruleset, now=now, tool_version=tool_version)
    except ServerError as exc:
        log.warning("duplicate sweep failed: %s", exc)
        report.sweep_error = str(exc)
    errors = [d.error for d in report.duplicates if d.error]
    if errors and report.sweep_error is None:
        report.sweep_error = f"{len(errors)} duplicate(s) not resolved: {errors[0]}"


def _write_one(
    client: FhirClient,
    decision: Decision,
    ruleset: CompiledRuleset,
    now: datetime,
    owner: str | None,
    tool_version: str,
) -> PatientResult:
    patient = decision.patient
    system, value = proposal_identifier(ruleset, patient)
    try:
        found = search_all(client, "ServiceRequest", {"identifier": f"{system}|{value}"})
    except ServerError as exc:
        return PatientResult(patient, "failed", message=str(exc))
    live = sorted((r for r in found if r.get("status") != "entered-in-error"), key=age_key)
    if not found:
        bundle = build_patient_transaction(
            decision, ruleset, now=now, owner=owner, tool_version=tool_version
        )
        try:
            response = client.transaction(bundle, retry=True)
        except ServerError as exc:
            return _after_failure(client, patient, f"{system}|{value}", exc)
        ref, status = _response_of(response, "ServiceRequest")
        if status.startswith("201"):
            return PatientResult(patient, "created", ref)
        return PatientResult(patient, "existing", ref, "written by another writer meanwhile")
    if not live:
        ref = reference(found[0])
        return PatientResult(
            patient, "existing", ref, f"{ref} is entered-in-error: not re-proposed"
        )
    ref = reference(live[0])
    try:
        tasks = search_all(client, "Task", {"focus": ref})
        if any(is_review_task(t) and t.get("status") != "entered-in-error" for t in tasks):
            return PatientResult(patient, "existing", ref)
        return _repair(client, decision, ruleset, ref, now, owner, tool_version)
    except ServerError as exc:
        return PatientResult(patient, "failed", ref, f"restoring the review Task: {exc}")


def _after_failure(client: FhirClient, patient: str, key: str, exc: ServerError) -> PatientResult:
    """A transaction whose answer was lost may have been applied: look once more."""
    try:
        found = search_all(client, "ServiceRequest", {"identifier": key})
    except ServerError:
        found = []
    if found:
        log.warning("%s: the transaction failed (%s) but its proposal is there", patient, exc)
        return PatientResult(
            patient, "created", reference(found[0]), "applied; the answer was lost"
        )
    return PatientResult(patient, "failed", message=str(exc))


def _repair(
    client: FhirClient,
    decision: Decision,
    ruleset: CompiledRuleset,
    request_ref: str,
    now: datetime,
    owner: str | None,
    tool_version: str,
) -> PatientResult:
    """The proposal is there without a review Task: write the Task (focus the proposal) and a
    Provenance for it. The Task's identifier may still be held by a retired Task, which a
    conditional create would return: then the create is plain (we hold the practice lock)."""
    entries = proposal_entries(decision, ruleset, now=now, owner=owner, tool_version=tool_version)
    by_type = {e.resource["resourceType"]: e for e in entries}
    task_entry, provenance_entry = by_type["Task"], by_type["Provenance"]
    task = copy.deepcopy(task_entry.resource)
    task["focus"] = {"reference": request_ref}
    provenance = copy.deepcopy(provenance_entry.resource)
    provenance["target"] = [{"reference": task_entry.full_url}]
    system, value = proposal_identifier(ruleset, decision.patient)
    held = search_all(client, "Task", {"identifier": f"{system}|{value}-review"})
    conditional = None if held else task_entry.if_none_exist
    bundle = transaction(
        [
            device_entry(tool_version),
            Entry(task_entry.patient, task_entry.full_url, task, conditional),
            Entry(provenance_entry.patient, provenance_entry.full_url, provenance),
        ]
    )
    client.transaction(bundle, retry=conditional is not None)
    log.warning("%s: restored the missing review Task of %s", decision.patient, request_ref)
    return PatientResult(decision.patient, "repaired", request_ref, "review Task restored")


def _response_of(response: Resource, resource_type: str) -> tuple[str | None, str]:
    """("Type/id", status) of the first entry of a type in a transaction-response."""
    for entry in response.get("entry") or []:
        resource = entry.get("resource") or {}
        answer = entry.get("response") or {}
        match = _LOCATION_RE.search(str(answer.get("location") or ""))
        if resource.get("resourceType") == resource_type and resource.get("id"):
            return reference(resource), str(answer.get("status", ""))
        if match and match.group(1) == resource_type:
            return f"{resource_type}/{match.group(2)}", str(answer.get("status", ""))
    return None, ""
