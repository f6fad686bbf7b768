"""A clinician's decision on a proposal, written to the FHIR server: accept or decline. The
resources written are built by `ips_screen.proposals.review` (pure builders). The CLI, the review
page and CDS Hooks feedback all decide through `accept` and `decline`, and show their `message`.

Accepting needs the patient's agreement (`patient_agreed`), the practice's IPS service
(`ips_service`, from [referral] in practice.toml or serve.toml: ConfigError without it) and a
clinician (`by`) and service the server has (review_people.py). Writes are one transaction each,
with If-Match on the review Task and on the proposal, so a concurrent change to either makes the
whole transaction fail (`ConflictError`, nothing changed). A review already decided, before or
during the write, is `AlreadyDecided` (exit 6), saying who did what and when. An unknown decline
reason or resources that cannot be built are a `UserError`. Logs name resource ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from ips_screen.dates import LONDON
from ips_screen.errors import AlreadyDecided, ConflictError, UserError
from ips_screen.facts.extract import reference_to
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.decision_words import (
    accepted_words,
    agreement_record,
    declined_words,
    suppressed_until,
)
from ips_screen.presentation.labels import care_plan_words, decline_window
from ips_screen.proposals.review import accept_resources, decline_resources, review_transaction
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.writeback.review_people import (
    decided_words,
    resolve_clinician,
    resolve_service,
    service_name,
)
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
    agreement: str = ""  # the Observation recording the patient's agreement
    service: str = ""  # the order's performer (the IPS service)
    priority: str = ""  # the order's ServiceRequest.priority
    message: str = ""  # the confirmation, in the ruleset's words


@dataclass(frozen=True)
class DeclineResult:
    task: str
    proposal: str
    provenance: str
    reason_code: str
    until: date | None = None  # the last day new proposals are suppressed (None: no rule)
    deferred: bool = False  # the reason is one of the rule's deferrals (e.g. not-now)
    message: str = ""  # the confirmation, in the ruleset's words


def is_open(loaded: Loaded) -> bool:
    """Whether the review is still to be decided (Task requested, proposal draft)."""
    return loaded.task.get("status") == "requested" and loaded.proposal.get("status") == "draft"


def _open(client: FhirClient, loaded: Loaded, ruleset: CompiledRuleset) -> None:
    """AlreadyDecided (who did what, when) unless the review is still to be decided."""
    if not is_open(loaded):
        raise AlreadyDecided(decided_words(client, loaded, ruleset))


def _built(build: Callable[[], dict]) -> dict:
    """The resources a pure builder makes; its ValueError is the user's (one line)."""
    try:
        return build()
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _write(
    client: FhirClient, loaded: Loaded, resources: dict, version: str, ruleset: CompiledRuleset
) -> list[str]:
    """Post the review transaction; the "Type/id" of each entry."""
    tid = loaded.task["id"]
    try:
        response = client.transaction(review_transaction(resources, tool_version=version))
    except ConflictError as exc:
        now = load_review(client, tid)
        if not is_open(now):  # decided by someone else meanwhile: say who, what and when
            raise AlreadyDecided(decided_words(client, now, ruleset)) from exc
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
    ips_service: str | None,
    patient_agreed: bool,
    ruleset: CompiledRuleset | None = None,
) -> AcceptResult:
    """Accept a proposal with the patient's agreement: the agreement Observation, the order to
    the IPS service, care plan, Task and proposal completed, Provenance.

    `task` is a Task id, or a review read earlier with `load_review` (whose versions If-Match
    checks). UserError without `patient_agreed`; ConfigError without `ips_service`; UserError
    when the server lacks `by` or the service; AlreadyDecided when the review is decided. The
    care plan addresses the proposal's reasonReference Conditions in the pain criterion's
    codelists (every Condition there when `ruleset` is None).
    """
    rules = ruleset or load_ruleset()
    if not patient_agreed:
        raise UserError(
            "accepting refers the patient: confirm they agreed to be referred "
            "(--patient-agreed); nothing was changed"
        )
    if ips_service is None:
        resolve_service(client, None)  # the configuration error
    loaded = task if isinstance(task, Loaded) else load_review(client, task)
    _open(client, loaded, rules)
    resolve_clinician(client, by)
    service = resolve_service(client, ips_service)
    sr = loaded.proposal
    conditions = [r for r in references(sr.get("reasonReference")) if r.startswith("Condition/")]
    if ruleset is not None:
        lists = pain_codelists(ruleset)
        conditions = [
            r for r in conditions if in_codelists(ruleset, lists, read_resource(client, r) or {})
        ]
    fit_notes = references(sr.get("supportingInfo"))

    resources = _built(
        lambda: accept_resources(
            sr,
            loaded.task,
            by=by,
            now=now,
            tool_version=tool_version,
            pain_conditions=conditions,
            fit_notes=fit_notes,
            ips_service=ips_service or "",
            patient_agreed=patient_agreed,
            care_plan=care_plan_words(rules),
            agreement_text=agreement_record(rules),
        )
    )
    refs = _write(client, loaded, resources, tool_version, rules)
    _, agreement, order, careplan, task_ref, proposal, provenance = refs
    priority = resources["order"]["priority"]
    log.info("accepted %s: %s to %s, %s, %s", task_ref, order, ips_service, careplan, agreement)
    message = accepted_words(
        rules,
        task=task_ref,
        order=order,
        careplan=careplan,
        service=service_name(service),
        agreement=agreement,
        priority=priority,
    )
    return AcceptResult(
        task_ref,
        proposal,
        order,
        careplan,
        provenance,
        tuple(conditions),
        tuple(fit_notes),
        agreement=agreement,
        service=ips_service or "",
        priority=priority,
        message=message,
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
    UserError, as is a clinician the server lacks. The result says until when new proposals are
    suppressed: a deferral reason (the rule's `deferrals`, e.g. not-now: 3 months) or the rule's
    window (12 months), from the decline's UK date.
    """
    rules = ruleset or load_ruleset()
    reasons = rules.model.proposal.decline_reasons
    if reason_code not in reasons:
        raise UserError(f"unknown decline reason {reason_code!r}; use one of: {', '.join(reasons)}")
    if reason_code == "other" and not (note and note.strip()):
        raise UserError("decline reason 'other' needs --note")
    loaded = task if isinstance(task, Loaded) else load_review(client, task)
    _open(client, loaded, rules)
    resolve_clinician(client, by)

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

    refs = _write(client, loaded, _built(build), tool_version, rules)
    _, task_ref, proposal, provenance = refs
    log.info("declined %s (%s)", task_ref, reason_code)
    decided_on = now.astimezone(LONDON).date()
    window = decline_window(rules, reason_code)
    return DeclineResult(
        task_ref,
        proposal,
        provenance,
        reason_code,
        until=suppressed_until(rules, reason_code, decided_on),
        deferred=bool(window and window[1]),
        message=declined_words(rules, task_ref, reason_code, decided_on),
    )
