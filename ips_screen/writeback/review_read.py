"""Reading clinicians' reviews of proposals from the FHIR server: the open reviews (a worklist),
one review with its evidence shaped for display, and a review as read for a decision
(`load_review`, with the versions If-Match needs).

A Task id is given as ``ID`` or ``Task/ID``. A Task the server does not have is a `UserError`
(exit 2: a bad argument), as is a Task that is not the review of this tool's IPS proposal for the
Patient the Task is `for` (`NotThisReview`). Logs name resource ids only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ips_screen.codes import IPS_SYSTEM, PROPOSAL_ID_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.errors import ServerError, UserError
from ips_screen.facts.extract import CODE_FIELD, codings, record_date, reference_to
from ips_screen.facts.model import Coding
from ips_screen.fhir.client import FhirClient, Resource
from ips_screen.presentation.supporting import one_per_record, parse_day, supporting_words
from ips_screen.proposals.review import review_subject
from ips_screen.ruleset.codelists import Codelist, normalise
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset, walk_criteria
from ips_screen.ruleset.model import Records

log = logging.getLogger("ips_screen.writeback")

_TASK_ID = re.compile(r"^(?:Task/)?([A-Za-z0-9\-.]{1,64})$")
_PRIORITY = {"priority-early": "early", "priority-routine": "routine"}
_NOT_FOUND = re.compile(r"^HTTP (404|410)\b")


@dataclass(frozen=True)
class ReviewItem:
    """One open review: the Task, its proposal and what a worklist shows."""

    task_id: str
    proposal: str  # "ServiceRequest/<id>"
    authored: str | None
    patient: str | None
    priority: str | None  # early / routine
    reason: str
    owner: str | None
    status: str = "requested"
    proposal_status: str | None = None


@dataclass(frozen=True)
class Evidence:
    """A referenced record, shaped for display; `found` False when the server lacks it."""

    ref: str
    found: bool = True
    display: str | None = None
    date: str | None = None  # YYYY-MM-DD (London day), None when undated
    status: str | None = None  # Condition clinical status
    value: str | None = None  # an Observation's coded answer, if any
    fitness: str | None = None  # supporting records: the category in their codelist
    same_as: tuple[str, ...] = ()  # supporting: other records of the same one (its document)
    words: str = ""  # supporting: the record in plain words ("Fit note: not fit for work, ...")


@dataclass(frozen=True)
class ReviewDetail:
    item: ReviewItem
    addressed: list[Evidence] = field(default_factory=list)  # of proposal.addresses
    reasons: list[Evidence] = field(default_factory=list)  # the other reasonReference records
    supporting: list[Evidence] = field(default_factory=list)  # supportingInfo, oldest first,
    # one per record as the ruleset counts them (a fit note's coded entry and document: one)
    not_found: list[Evidence] = field(default_factory=list)  # reasons the server lacks
    clinician_note: str = ""
    patient_explanation: str = ""

    # The default ruleset's names for the three lists (chronic pain, employment, fit notes).
    @property
    def pain(self) -> list[Evidence]:
        return self.addressed

    @property
    def employment(self) -> list[Evidence]:
        return self.reasons

    @property
    def fit_notes(self) -> list[Evidence]:
        return self.supporting


@dataclass(frozen=True)
class Loaded:
    """A review Task and its proposal as read, with their versions (for If-Match)."""

    task: Resource
    proposal: Resource


def task_id_of(value: str) -> str:
    """The id of a Task given as ``ID`` or ``Task/ID``; UserError otherwise."""
    found = _TASK_ID.match(value.strip())
    if found is None:
        raise UserError(f"not a Task id: {value!r} (give ID or Task/ID)")
    return found.group(1)


def read_resource(client: FhirClient, ref: str) -> Resource | None:
    """The resource at "Type/id" with meta.versionId set from the read, or None if absent."""
    rtype, _, rid = ref.partition("/")
    try:
        resource, version = client.read(rtype, rid)
    except ValueError:  # not a type/id the client accepts
        return None
    except ServerError as exc:
        if _NOT_FOUND.match(str(exc)):
            return None
        raise
    if version:
        resource["meta"] = {**(resource.get("meta") or {}), "versionId": version}
    return resource


def is_proposal(sr: Resource | None) -> bool:
    """Whether the resource is a proposal of this tool (a ServiceRequest, intent proposal, with an
    identifier in the proposal identifier system), whatever the ruleset that made it."""
    return (
        sr is not None
        and sr.get("resourceType") == "ServiceRequest"
        and sr.get("intent") == "proposal"
        and any(
            isinstance(i, dict) and i.get("system") == PROPOSAL_ID_SYSTEM
            for i in sr.get("identifier") or ()
        )
    )


def is_review(task: Resource) -> bool:
    """Whether the Task is an approve (review) Task."""
    return (TASK_CODE_SYSTEM, "APPROVE") in codings(task.get("code"))


def _item(task: Resource, sr: Resource) -> ReviewItem:
    categories = codings(sr.get("category"))
    priority = next(
        (_PRIORITY[c.lower()] for s, c in categories if s == IPS_SYSTEM and c.lower() in _PRIORITY),
        None,
    )
    description = (task.get("description") or "").strip()
    return ReviewItem(
        task_id=task["id"],
        proposal=f"ServiceRequest/{sr['id']}",
        authored=task.get("authoredOn"),
        patient=reference_to(task.get("for")) or reference_to(sr.get("subject")),
        priority=priority,
        reason=description.splitlines()[0] if description else "",
        owner=reference_to(task.get("owner")),
        status=task.get("status", ""),
        proposal_status=sr.get("status"),
    )


def _instant(value: str | None) -> datetime:
    try:
        when = datetime.fromisoformat(value or "")
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def open_reviews(
    client: FhirClient, *, owner: str | None = None, priority: str | None = None
) -> list[ReviewItem]:
    """Requested approve Tasks on IPS proposals in `work_order` (early first, then oldest
    waiting first: authoredOn, then id); a Task whose `for` is not its proposal's subject
    (`review_subject`) is left out, with a warning."""
    params = [("code", f"{TASK_CODE_SYSTEM}|approve"), ("status", "requested")]
    if owner:
        params.append(("owner", owner))
    try:
        found = list(client.search("Task", [*params, ("_include", "Task:focus")]))
    except ServerError as exc:
        if not exc.refused_as_asked():  # not answering: asking again without it fails too
            raise
        log.info("Task search with _include refused (%s); reading each focus instead", exc)
        found = list(client.search("Task", params))
    included = {f"{r['resourceType']}/{r.get('id')}": r for r in found}
    tasks = [r for r in found if r.get("resourceType") == "Task"]
    items = []
    for task in tasks:
        focus = reference_to(task.get("focus"))
        if task.get("status") != "requested" or not is_review(task) or not focus:
            continue
        if owner and reference_to(task.get("owner")) != owner:
            continue
        if focus not in included:
            included[focus] = (
                read_resource(client, focus) if focus.startswith("ServiceRequest/") else {}
            )
        sr = included[focus]
        if not is_proposal(sr):
            continue
        try:
            review_subject(sr, task)
        except ValueError as exc:
            log.warning("open reviews: left out: %s", exc)
            continue
        item = _item(task, sr)
        if priority is None or item.priority == priority:
            items.append(item)
    items.sort(key=work_order)
    return items


def work_order(item: ReviewItem) -> tuple[int, datetime, str]:
    """The worklist's order: priority (early, routine, none), then oldest waiting first."""
    rank = {"early": 0, "routine": 1}.get(item.priority or "", 2)
    return rank, _instant(item.authored), item.task_id


class NotThisReview(UserError):
    """The Task is not a review this tool may decide for the patient in hand: not the review of
    an IPS proposal of this tool, the Task and the proposal about different patients, or (when
    a patient is expected) about another patient. Nothing is written."""


def load_review(client: FhirClient, task_id: str, *, patient_id: str | None = None) -> Loaded:
    """The review Task and its IPS proposal, read with their versions.

    UserError when the Task is absent; `NotThisReview` when it is not the review of an IPS
    proposal of this tool for the Patient the Task is `for` (`review_subject`), or, with
    `patient_id`, not for that Patient. The callers log it (the CLI prints it as its one line).
    """
    tid = task_id_of(task_id)
    task = read_resource(client, f"Task/{tid}")
    if task is None:
        raise UserError(f"Task/{tid} not found on the FHIR server")
    focus = reference_to(task.get("focus")) or ""
    proposal = read_resource(client, focus) if focus.startswith("ServiceRequest/") else None
    if not is_review(task) or not is_proposal(proposal):
        raise NotThisReview(f"Task/{tid} is not the review of a proposal of this tool")
    assert proposal is not None
    try:
        subject = review_subject(proposal, task)
        if patient_id is not None and subject != f"Patient/{patient_id}":
            raise ValueError(f"Task/{tid} is not for Patient/{patient_id}")
    except ValueError as exc:
        raise NotThisReview(str(exc)) from None
    return Loaded(task, proposal)


def pain_codelists(ruleset: CompiledRuleset) -> set[str]:
    """The names of the codelists the criterion `proposal.addresses` reads (none without one)."""
    criterion_id = ruleset.model.proposal.addresses
    names: set[str] = set()
    for inclusion in ruleset.model.criteria:
        if inclusion.rule.id == criterion_id:
            names |= {r.codelist for r in walk_criteria(inclusion.rule) if isinstance(r, Records)}
    return names


def _all_codings(resource: Resource) -> tuple[tuple[str, str], ...]:
    concept = resource.get(CODE_FIELD.get(resource.get("resourceType", ""), "code"))
    parts = [codings(concept), codings(resource.get("valueCodeableConcept"))]
    for component in resource.get("component") or ():
        if isinstance(component, dict):
            parts += [
                codings(component.get("code")),
                codings(component.get("valueCodeableConcept")),
            ]
    return tuple(c for part in parts for c in part)


def in_codelists(ruleset: CompiledRuleset, names: set[str], resource: Resource) -> bool:
    """Whether any coding of the record is in one of the codelists `names`."""
    keys = _all_codings(resource)
    return any(ruleset.codelists[n].first_match(keys) is not None for n in names)


def _text(concept: object, names: Mapping[Coding, str]) -> str | None:
    """A concept's display, else its text, else the codelists' term for it, else its code."""
    if not isinstance(concept, dict):
        return None
    codes = concept.get("coding") or ()
    for coding in codes:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    known = [names[c] for c in codings(concept) if c in names]
    code = next((str(c["code"]) for c in codes if isinstance(c, dict) and c.get("code")), None)
    return concept.get("text") or (known[0] if known else code)


def _evidence(
    ref: str, resource: Resource | None, names: Mapping[Coding, str], fit: Codelist | None = None
) -> Evidence:
    if resource is None:
        return Evidence(ref, found=False)
    rtype = resource["resourceType"]
    concept = resource.get(CODE_FIELD.get(rtype, "code"))
    when = record_date(resource, rtype) if rtype in CODE_FIELD else None
    values = [resource.get("valueCodeableConcept")]
    values += [c.get("valueCodeableConcept") for c in resource.get("component") or ()]
    return Evidence(
        ref,
        display=_text(concept, names),
        date=when.isoformat() if when else None,
        status=_text(resource.get("clinicalStatus"), names) if rtype == "Condition" else None,
        value=next((t for t in (_text(v, names) for v in values) if t), None),
        fitness=(fit.first_match(codings(concept)) or "unspecified") if fit else None,
    )


def references(values: object) -> list[str]:
    """The distinct references of a list of Reference elements, in order."""
    refs = (reference_to(v) for v in values) if isinstance(values, list) else ()
    return list(dict.fromkeys(r for r in refs if r))


def review_detail(
    client: FhirClient, task_id: str, *, ruleset: CompiledRuleset | None = None
) -> ReviewDetail:
    """A review with its evidence read from the server, shaped for display."""
    ruleset = ruleset or load_ruleset()
    loaded = load_review(client, task_id)
    sr = loaded.proposal
    pain_lists = pain_codelists(ruleset)
    fit_name = ruleset.model.proposal.supporting_info.codelist
    fit_list = ruleset.codelists[fit_name]
    names = {
        normalise(row.system, row.code): row.display
        for codelist in ruleset.codelists.values()
        for row in codelist.rows
    }
    supporting_refs = references(sr.get("supportingInfo"))
    read = {ref: read_resource(client, ref) for ref in supporting_refs}
    pain, employment, missing = [], [], []
    fit_notes = []
    for ref in references(sr.get("reasonReference")):
        if ref in read:
            continue  # shown with the supporting records
        resource = read_resource(client, ref)
        if resource is None:
            missing.append(Evidence(ref, found=False))
        elif in_codelists(ruleset, pain_lists, resource):
            pain.append(_evidence(ref, resource, names))
        elif in_codelists(ruleset, {fit_name}, resource):
            read[ref] = resource  # a fit note behind the employment criterion: one list
        else:
            employment.append(_evidence(ref, resource, names))
    for ref, resource in read.items():
        if resource is not None and in_codelists(ruleset, pain_lists, resource):
            pain.append(_evidence(ref, resource, names))  # e.g. a pain review (a Procedure)
        else:
            fit_notes.append(_evidence(ref, resource, names, fit_list))
    notes = [n.get("text", "") for n in sr.get("note") or () if isinstance(n, dict)]
    return ReviewDetail(
        item=_item(loaded.task, sr),
        addressed=pain,
        reasons=employment,
        supporting=_one_per_record(fit_notes, ruleset),
        not_found=missing,
        clinician_note="\n\n".join(n for n in notes if n),
        patient_explanation=sr.get("patientInstruction", ""),
    )


@dataclass(frozen=True)
class ReviewWork:
    """The review work for the nightly report: the open reviews (as `review list` counts them)
    and the reviews decided since `since` (by the Task's lastModified), as accepted, deferred
    (declined with a reason the ruleset defers for, e.g. "not now") or declined."""

    open: list[ReviewItem]
    since: datetime
    accepted: int = 0
    deferred: int = 0
    declined: int = 0


def review_work(
    client: FhirClient, since: datetime, deferred_reasons: frozenset[str]
) -> ReviewWork:
    open_ = open_reviews(client)
    params = [("code", f"{TASK_CODE_SYSTEM}|approve"), ("status", "completed,rejected,cancelled")]
    counts = {"accepted": 0, "deferred": 0, "declined": 0}
    deferred = {code.lower() for code in deferred_reasons}  # `codings` upper-cases codes
    for task in client.search("Task", params):
        if task.get("resourceType") != "Task" or not is_review(task):
            continue
        if _instant(task.get("lastModified")) < since:
            continue
        if task.get("status") == "completed":
            counts["accepted"] += 1
        elif any(code.lower() in deferred for _, code in codings(task.get("statusReason"))):
            counts["deferred"] += 1
        else:
            counts["declined"] += 1
    return ReviewWork(open_, since, **counts)


def _one_per_record(found: list[Evidence], ruleset: CompiledRuleset) -> list[Evidence]:
    """The supporting records as the ruleset counts them, oldest first: records of one fit note
    (same category, same day) become one entry, the coded entry first, naming the others in
    `same_as`; each in plain words."""
    coded_first = sorted(found, key=lambda e: (e.ref.startswith("DocumentReference/"), e.ref))
    groups = one_per_record(
        [e for e in coded_first if e.found],
        ruleset,
        day=lambda e: parse_day(e.date),
        category=lambda e: e.fitness or "unspecified",
        ref=lambda e: e.ref,
    )
    out = [
        replace(
            first,
            same_as=tuple(e.ref for e in rest),
            words=supporting_words(parse_day(first.date), first.fitness or "", ruleset),
        )
        for first, *rest in groups
    ]
    out += [e for e in found if not e.found]
    return sorted(out, key=lambda e: (e.date or "9999", e.ref))
