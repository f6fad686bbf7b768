"""CDS Hooks feedback on the `ips-screen` card: record the clinician's choice on the practice FHIR
server with the service's OWN backend client (never the EHR user's token).

- pending proposal, accepted: `review accept` (the patient's agreement, the order to the IPS
  service of serve.toml's [referral], care plan, Task completed), by = the card's context.userId:
  the suggestion's label itself says the patient agrees ("Patient agrees: refer to IPS", the
  ruleset's `suggestion_label`), so choosing it is the clinician's confirmation (without an IPS
  service configured the answer is 503 and nothing is recorded); overridden with a reason:
  `review decline` with that reason.
- the answer's body lists what was recorded, in the ruleset's words (`results`: e.g. "Deferred
  Task/1 (...): deferred until 26 February 2027 ..."), or who decided first.
- live card (no proposal yet), accepted: nothing to update (the EHR created the order), logged;
  overridden with a reason: the proposal is written (as the screen writes it) and declined at
  once, so the 12-month suppression applies.

Before anything is written, the review is read from the practice server and must be the review
of this tool's proposal for the card's patient: the Task `for` that Patient, its focus a
proposal with the tool's identifier about the same Patient (`review.load_review`), the patient
being the one this service showed the card for (the card state). A prefetch can name any Task
id, so a mismatch is refused: nothing is written, the answer is 409 with a message that names no
record, and a warning names the resource ids. A live card's proposal is refused the same way when
a record it refers to is, on the practice server, another patient's.

Idempotent: a review Task no longer `requested` is left alone, and a live card's proposal is
found by its deterministic identifier, so the same feedback twice changes nothing. Feedback on
a card this process did not show (restart, another worker), from another EHR than the one it was
shown to, overridden without a known reason, or by a user who is not a Practitioner(Role), is
logged and ignored. A backend failure answers 502 (the EHR may send the feedback again), the
practice lock held by a screen run 503. The body is checked by `cds_requests.Feedback` (400).
Items are recorded in order; when any is refused the others are still recorded and the answer
is 409 (sending it all again is safe: it is idempotent).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from ips_screen import __version__
from ips_screen.codes import DECLINE_REASON_SYSTEM
from ips_screen.errors import AlreadyDecided, ConfigError, LockHeld, ServerError, UserError
from ips_screen.facts.extract import patient_of
from ips_screen.proposals.build import proposal_identifier
from ips_screen.service.cds_requests import Feedback, FeedbackItem, parsed
from ips_screen.service.state import CardState, ServiceState
from ips_screen.writeback import review
from ips_screen.writeback.lock import PracticeLock, default_lock_path
from ips_screen.writeback.review_read import read_resource
from ips_screen.writeback.sweep import is_review_task, search_all
from ips_screen.writeback.writer import write_proposals

log = logging.getLogger("ips_screen.service")

NO_COMMENT = "Dismissed in the EHR (CDS Hooks card) with reason 'other'; no comment given."
REFUSED = (
    "the records on the practice server do not match the patient this card was shown for; "
    "nothing was recorded"
)
_BY = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


class Refused(Exception):
    """Feedback whose review does not match its card: answered 409, nothing written."""


def handle_feedback(
    state: ServiceState, body: dict[str, Any], claims: dict[str, Any]
) -> tuple[int, dict]:
    items = parsed(Feedback, body).feedback
    refused = 0
    results: list[str] = []
    try:
        for item in items:
            try:
                results.extend(apply(state, item, claims.get("iss")))
            except Refused:
                refused += 1
    except LockHeld as exc:
        log.warning("feedback not recorded: %s", exc)
        return 503, {"error": "a screen run is writing to the FHIR server; send it again later"}
    except ConfigError as exc:  # no [referral] ips_service: an accept cannot go anywhere
        log.warning("feedback not recorded: %s", exc)
        return 503, {"error": f"accepting is not set up on this service: {exc}"}
    except ServerError as exc:
        log.warning("feedback not recorded: %s", exc)
        return 502, {"error": "the practice FHIR server failed; send the feedback again"}
    if refused:
        return 409, {"error": REFUSED if len(items) == 1 else f"{refused} item(s): {REFUSED}"}
    return 200, {"results": results} if results else {}


def _reason(item: FeedbackItem, reasons: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(decline reason code, comment) from overrideReason, (None, None) when unusable."""
    override = item.override_reason
    coding = override.reason if override else None
    comment = override.user_comment if override else None
    comment = comment.strip() if comment and comment.strip() else None
    if coding is None or coding.system != DECLINE_REASON_SYSTEM:
        return None, comment
    return (coding.code if coding.code in reasons else None), comment


def apply(state: ServiceState, item: FeedbackItem, iss: str | None) -> list[str]:
    """Record one feedback item (see the module docstring); logs what it did and returns what
    it says about it (none when ignored). `Refused` when the review on the practice server is
    not the card patient's."""
    card_id = item.card
    card = state.cards.get(card_id)
    if card is None:
        log.info("feedback on card %s: not a card this process showed; ignored", card_id)
        return []
    if card.iss != iss:
        log.warning("feedback on card %s from another EHR than it was shown to; ignored", card_id)
        return []
    where = f"card {card_id} (Patient/{card.patient_id})"
    if item.outcome == "accepted":
        accepted = {s.id for s in item.accepted_suggestions or ()}
        if card.suggestion not in accepted:
            log.info("feedback on %s: accepted without its suggestion; ignored", where)
        elif card.task_id is None:
            log.info(
                "feedback on %s: accepted; the EHR created the order, nothing to update", where
            )
        else:
            return _decide(state, card, where, "accept")
        return []
    code, comment = _reason(item, state.ruleset.model.proposal.decline_reasons)
    if code is None:
        log.info("feedback on %s: overridden without a known reason; nothing recorded", where)
        return []
    if _by(card, where) is None:
        return []
    if card.task_id is None:
        _write_proposal(state, card, where)
    note = comment or (NO_COMMENT if code == "other" else None)
    return _decide(state, card, where, "decline", code, note)


def _by(card: CardState, where: str) -> str | None:
    """The clinician who decided (context.userId), if it is a Practitioner(Role)."""
    if card.user_id is not None and _BY.match(card.user_id):
        return card.user_id
    log.warning("feedback on %s: userId is not a Practitioner(Role); not recorded", where)
    return None


def _foreign_records(state: ServiceState, card: CardState) -> list[str]:
    """The records the live card's proposal would refer to that the practice server holds for
    another patient (the prefetch names the records, so any id may be in it)."""
    assert card.decision is not None
    links = card.decision.links
    foreign = []
    for ref in dict.fromkeys([*links.reasons, *links.supporting]):
        resource = read_resource(state.backend, ref)
        if resource is not None and patient_of(resource) != card.patient_id:
            foreign.append(ref)
    return foreign


def _write_proposal(state: ServiceState, card: CardState, where: str) -> None:
    """Write the live card's proposal (unless it is there already), under the practice lock;
    `Refused` when it would refer to another patient's records on the practice server."""
    if card.decision is None:
        return
    foreign = _foreign_records(state, card)
    if foreign:
        log.warning(
            "feedback on %s: refused: %s on the practice server are another patient's; "
            "nothing written",
            where,
            ", ".join(foreign),
        )
        raise Refused("the proposal would refer to another patient's records")
    backend = state.backend
    lock = PracticeLock(
        default_lock_path(backend.base_url, state.environ), base_url=backend.base_url
    )
    with lock:
        report = write_proposals(
            backend,
            [card.decision],
            state.ruleset,
            now=state.now(),
            tool_version=__version__,
            sweep=False,
        )
    result = report.results[0]
    if result.status == "failed":
        raise ServerError(result.message or "writing the proposal failed")
    log.info("feedback on %s: proposal %s (%s)", where, result.service_request, result.status)


def _proposal_task(state: ServiceState, card: CardState) -> str | None:
    """The review Task of the live card's proposal, found by the proposal's identifier."""
    system, value = proposal_identifier(state.ruleset, card.patient_id)
    tasks = search_all(state.backend, "Task", {"identifier": f"{system}|{value}-review"})
    live = [t for t in tasks if is_review_task(t) and t.get("status") != "entered-in-error"]
    return live[0]["id"] if live else None


def _decide(
    state: ServiceState,
    card: CardState,
    where: str,
    action: str,
    code: str | None = None,
    note: str | None = None,
) -> list[str]:
    by = _by(card, where)
    if by is None:
        return []
    task_id = card.task_id or _proposal_task(state, card)
    if task_id is None:
        log.warning("feedback on %s: no review Task found; not recorded", where)
        return []
    try:
        loaded = review.load_review(state.backend, task_id, patient_id=card.patient_id)
    except ServerError:
        raise
    except UserError as exc:  # absent, not an IPS review, or another patient's
        log.warning("feedback on %s: refused: %s; nothing written", where, exc)
        raise Refused(str(exc)) from None
    referral = state.config.referral
    try:
        if action == "accept":
            done = review.accept(
                state.backend,
                loaded,
                by=by,
                now=state.now(),
                tool_version=__version__,
                ips_service=referral.ips_service if referral else None,
                patient_agreed=True,  # the suggestion's label says the patient agrees
                ruleset=state.ruleset,
            )
            log.info("feedback on %s: accepted %s: %s", where, done.task, done.order)
            return [done.message]
        else:
            assert code is not None
            declined = review.decline(
                state.backend,
                loaded,
                by=by,
                reason_code=code,
                note=note,
                now=state.now(),
                tool_version=__version__,
                ruleset=state.ruleset,
            )
            log.info("feedback on %s: declined %s (%s)", where, declined.task, code)
            return [declined.message]
    except AlreadyDecided as exc:  # idempotent: the same feedback again changes nothing
        log.info("feedback on %s: Task/%s was already decided; nothing changed", where, task_id)
        return [str(exc)]
    except (ServerError, ConfigError):
        raise
    except UserError as exc:
        log.warning("feedback on %s: %s; not recorded", where, exc)
        return []
