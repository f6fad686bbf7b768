"""CDS Hooks cards for the patient-view hook: pure functions of one patient's resources.

Order of checks (as `cds.handle_patient_view` applies them):
1. Loop guard: a referral coded in the codelist of the ruleset's own `referral-open` rule, with
   intent order or plan (e.g. the one this card's suggestion creates), whose status is not
   revoked or entered-in-error gives no card. A completed referral authored before that rule's
   `completed_within_months` does not block (the default ruleset: 12 months, then IPS is
   offered again; docs/default-ruleset.md, `ips-referral-open`).
2. A pending proposal (the ServiceRequest with the project's proposal identifier, intent
   proposal, status draft, about the patient, and its review Task requested and `for` the
   patient) gives a card for that proposal; its detail is the proposal's stored note, so the
   card says what the reviewer will see. Prefetch is the EHR's word only: feedback on the card
   checks the practice server's own copy before it writes (feedback.py).
3. Otherwise the engine decides live: `propose` gives a card; excluded / not eligible give none.

The card detail is markdown built from the decision's brief (or the stored note's first block),
with the text of the records escaped (card_detail.py); it never holds names, birth dates or
identifiers beyond resource ids.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from uuid import NAMESPACE_URL, uuid5

from ips_screen import __version__
from ips_screen.codes import (
    DECLINE_REASON_SYSTEM,
    IPS_SYSTEM,
    PROPOSAL_ID_SYSTEM,
    RULESET_EXTENSION,
)
from ips_screen.dates import months_before, parse_fhir_date
from ips_screen.engine import Decision
from ips_screen.facts.extract import codings, reference_to
from ips_screen.presentation.brief import brief_lines
from ips_screen.presentation.labels import card_words
from ips_screen.proposals.build import proposal_identifier
from ips_screen.proposals.common import ORDER_PRIORITY, PRIORITY_CODES, place_evidence, validated
from ips_screen.proposals.text import patient_explanation
from ips_screen.ruleset.loader import CompiledRuleset, walk_criteria
from ips_screen.ruleset.model import ReferralOpen
from ips_screen.service.card_detail import detail_markdown, note_brief
from ips_screen.service.card_history import history_line
from ips_screen.writeback.sweep import is_review_task

Resource = dict
ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order", "plan"}
)
NOT_BLOCKING = frozenset({"revoked", "entered-in-error"})
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class Pending:
    """A proposal awaiting review, as read from the EHR's data."""

    proposal: Resource
    task: Resource


@dataclass(frozen=True)
class CardResult:
    card: dict
    task_id: str | None  # the pending proposal's review Task
    decision: Decision | None  # the live decision (None for a pending proposal)


# --------------------------------------------------------------------------- finding things


def by_ref(resources: Iterable[Resource]) -> dict[str, Resource]:
    return {
        f"{r['resourceType']}/{r['id']}": r
        for r in resources
        if isinstance(r.get("resourceType"), str) and isinstance(r.get("id"), str)
    }


def referral_rule(ruleset: CompiledRuleset) -> ReferralOpen | None:
    """The ruleset's own `referral-open` exclusion (the one on its request codelist first)."""
    found = [
        rule
        for exclusion in ruleset.model.exclusions
        for rule in walk_criteria(exclusion.rule)
        if isinstance(rule, ReferralOpen)
    ]
    request = ruleset.model.proposal.request_codelist
    return next((r for r in found if r.codelist == request), found[0] if found else None)


def blocking_referral(
    resources: Mapping[str, Resource], ruleset: CompiledRuleset, as_of: date
) -> str | None:
    """The reference of a referral (order or plan) that must silence the card, if any: coded in
    the codelist of the ruleset's `referral-open` rule (else the request codelist), in any status
    but revoked or entered-in-error; a completed one only within the rule's
    `completed_within_months` (never without such a rule)."""
    rule = referral_rule(ruleset)
    codelist = ruleset.codelists[rule.codelist if rule else ruleset.model.proposal.request_codelist]
    for ref, resource in resources.items():
        if resource.get("resourceType") != "ServiceRequest":
            continue
        if not any(key in codelist for key in codings(resource.get("code"))):
            continue
        status = resource.get("status")
        if resource.get("intent") not in ORDER_INTENTS or status in NOT_BLOCKING:
            continue
        if status == "completed":
            authored = parse_fhir_date(resource.get("authoredOn"))
            window = rule.completed_within_months if rule else None
            if window is None or (authored is not None and authored < months_before(as_of, window)):
                continue
        return ref
    return None


def pending_proposal(
    resources: Mapping[str, Resource], ruleset: CompiledRuleset, patient_id: str
) -> Pending | None:
    """The patient's proposal awaiting review (draft proposal + requested review Task).

    Only a proposal about `patient_id` with its review Task `for` `patient_id` counts: a
    prefetched Task or ServiceRequest of another patient never makes the card (and feedback
    checks the practice server's copy again before writing)."""
    system, value = proposal_identifier(ruleset, patient_id)
    patient = f"Patient/{patient_id}"
    for ref, sr in resources.items():
        if sr.get("resourceType") != "ServiceRequest" or reference_to(sr.get("subject")) != patient:
            continue
        ids = {(i.get("system"), i.get("value")) for i in sr.get("identifier") or ()}
        if (system, value) not in ids or (sr.get("intent"), sr.get("status")) != (
            "proposal",
            "draft",
        ):
            continue
        for task in resources.values():
            if (
                task.get("resourceType") == "Task"
                and isinstance(task.get("id"), str)
                and _FHIR_ID.match(task["id"])
                and reference_to(task.get("for")) == patient
                and task.get("status") == "requested"
                and is_review_task(task)
                and reference_to(task.get("focus")) == ref
            ):
                return Pending(sr, task)
    return None


# --------------------------------------------------------------------------- the card


def card_uuid(ruleset: CompiledRuleset, patient_id: str, task_id: str | None) -> str:
    system, value = proposal_identifier(ruleset, patient_id)
    return str(uuid5(NAMESPACE_URL, f"{system}|{value}|{task_id or 'live'}#card"))


def suggestion_uuid(card_id: str) -> str:
    return str(uuid5(NAMESPACE_URL, f"urn:uuid:{card_id}#refer-to-ips"))


def _request_code(ruleset: CompiledRuleset) -> dict:
    rows = ruleset.codelists[ruleset.model.proposal.request_codelist].rows
    coding = [{"system": r.system, "code": r.code, "display": r.display} for r in rows]
    text = next((r.display for r in rows if r.system == IPS_SYSTEM), rows[0].display)
    return {"coding": coding, "text": text}


def order_resource(
    ruleset: CompiledRuleset,
    patient_id: str,
    *,
    code: dict,
    reasons: Iterable[str],
    supporting: Iterable[str],
    priority: str | None,
    based_on: str | None,
    performer: str | None = None,
) -> dict:
    """The draft IPS order the suggestion creates. Its identifier is the one `review accept`
    gives its order, so accepting the proposal later finds it instead of adding a second; like
    that order, it goes to the IPS service (`performer`, serve.toml's [referral]) with the
    screen's priority in ServiceRequest.priority (`ORDER_PRIORITY`)."""
    _, value = proposal_identifier(ruleset, patient_id)
    order: dict = {
        "resourceType": "ServiceRequest",
        "extension": [{"url": RULESET_EXTENSION, "valueString": f"{ruleset.id}@{ruleset.version}"}],
        "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{value}-order"}],
        "status": "draft",
        "intent": "order",
        "priority": ORDER_PRIORITY.get(priority or "routine", "routine"),
        "code": copy.deepcopy(code),
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonReference": [{"reference": r} for r in dict.fromkeys(reasons)],
        "supportingInfo": [{"reference": r} for r in dict.fromkeys(supporting)],
        "patientInstruction": patient_explanation(ruleset),
    }
    if priority in PRIORITY_CODES:
        order["category"] = [{"coding": [PRIORITY_CODES[priority]]}]
    if based_on:
        order["basedOn"] = [{"reference": based_on}]
    if performer:
        order["performer"] = [{"reference": performer}]
    return validated(place_evidence(order))  # R4's reasonReference types; empty lists dropped


def override_reasons(ruleset: CompiledRuleset) -> list[dict]:
    """The ruleset's decline reasons, as the card's overrideReasons."""
    return [
        {"system": DECLINE_REASON_SYSTEM, "code": code, "display": display}
        for code, display in ruleset.model.proposal.decline_reasons.items()
    ]


def _priority_of(proposal: Resource) -> str | None:
    for system, code in codings(proposal.get("category")):
        if system == IPS_SYSTEM and code.lower().startswith("priority-"):
            return code.lower().removeprefix("priority-")
    return None


def _refs(values: object) -> list[str]:
    found = (reference_to(v) for v in values) if isinstance(values, list) else ()
    return [r for r in found if r]


def build_card(
    ruleset: CompiledRuleset,
    patient_id: str,
    resources: Mapping[str, Resource],
    *,
    decision: Decision | None,
    pending: Pending | None,
    review_url: str | None,
    today: date | None = None,
    ips_service: str | None = None,
) -> CardResult:
    """The card for a pending proposal (when given), else for a live `propose` decision; with
    `today`, the detail carries the patient's IPS history in one line (after the supporting
    records), when there is any; `ips_service` is the suggested order's performer."""
    words = card_words(ruleset)
    if pending is not None:
        sr, task_id = pending.proposal, pending.task["id"]
        notes = [n.get("text", "") for n in sr.get("note") or () if isinstance(n, dict)]
        brief = note_brief(next((n for n in notes if n), ""))
        reasons, supporting = _refs(sr.get("reasonReference")), _refs(sr.get("supportingInfo"))
        priority, code = _priority_of(sr), sr.get("code") or _request_code(ruleset)
        based_on: str | None = f"ServiceRequest/{sr['id']}"
        summary = words["pending"]
    else:
        assert decision is not None and decision.outcome == "propose"
        task_id, brief = None, brief_lines(decision, ruleset)
        reasons, supporting = list(decision.links.reasons), list(decision.links.supporting)
        priority, code, based_on = decision.priority, _request_code(ruleset), None
        actions = ruleset.model.texts.flag_actions
        asked = [actions[f] for f in decision.flags if f in actions]
        summary = words["summary"] + (f" (please {'; '.join(asked)})" if asked else "")
    uuid = card_uuid(ruleset, patient_id, task_id)
    order = order_resource(
        ruleset,
        patient_id,
        code=code,
        reasons=reasons,
        supporting=supporting,
        priority=priority,
        based_on=based_on,
        performer=ips_service,
    )
    card: dict = {
        "uuid": uuid,
        "summary": summary,
        "detail": detail_markdown(
            brief,
            supporting,
            resources,
            ruleset,
            pending=task_id is not None,
            history=history_line(resources.values(), ruleset, today),
        ),
        "indicator": "info",
        "source": {"label": f"ips-screen {__version__} ({ruleset.id}@{ruleset.version})"},
        "suggestions": [
            {
                "label": words["label"],
                "uuid": suggestion_uuid(uuid),
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": words["description"],
                        "resource": order,
                    }
                ],
            }
        ],
        "selectionBehavior": "at-most-one",
        "overrideReasons": override_reasons(ruleset),
    }
    if review_url:
        card["links"] = [{"label": "Review in ips-screen", "url": review_url, "type": "absolute"}]
    return CardResult(card, task_id, decision)
