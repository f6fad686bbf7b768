"""The review page: a worklist of open IPS proposals, one proposal's evidence, accept or decline.

Plain server-rendered HTML (templates/*.html.j2, rendered by pages.py), no JavaScript. Every page
needs a signed-in user (signin.py: server-side sessions, sign-in throttle); every form carries
the session's CSRF token and a POST without it is 403; logout ends the session for good; too
many failed sign-ins from an address are answered 429 with Retry-After. Accept and decline go
through `ips_screen.writeback.review` exactly as `ips-screen review` does, with `by` = the user's
Practitioner(Role) and the IPS service of serve.toml's [referral]; accepting needs the box
confirming the patient's agreement ticked. A form in error (no agreement, no reason, "Other"
without a note) is shown again in the NHS error pattern, the user's choices kept; the server
checks, never the browser. A review someone already decided is a 409 page saying who did what
and when, as a warning; a concurrent change is a 409 page; nothing is changed. Pages are
`Cache-Control: no-store` with a strict Content-Security-Policy. Logs name ids only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from ips_screen import __version__
from ips_screen.dates import long_date, today_london
from ips_screen.errors import AlreadyDecided, ConfigError, ConflictError, ServerError, UserError
from ips_screen.presentation.decision_words import agreement_words, before_deciding
from ips_screen.presentation.labels import short_name
from ips_screen.service import signin
from ips_screen.service.pages import (
    error,
    forbidden,
    not_found,
    note_blocks,
    redirect,
    render,
    signed_in,
    state_of,
    timeline,
    unavailable,
)
from ips_screen.service.state import ServiceState
from ips_screen.service.worklist_view import history_rows, worklist_view
from ips_screen.writeback import review
from ips_screen.writeback.ips_history import read_history
from ips_screen.writeback.patient_identity import read_identities
from ips_screen.writeback.review_people import UnknownClinician, UnknownService

log = logging.getLogger("ips_screen.service")
router = APIRouter()
SCOPE_COOKIE = "ips_screen_scope"  # "mine" or "all": whose patients the worklist shows
SCOPES = ("mine", "all")
BAD_SIGN_IN = "The username or password is not right. Please try again."


# --------------------------------------------------------------------------- sign-in


@router.get("/review")
def review_root(request: Request) -> Response:
    return redirect(request, "/review/")


@router.get("/review/login")
def login_form(request: Request) -> Response:
    if signin.current_user(request, state_of(request)) is not None:
        return redirect(request, "/review/")
    if signin.proxy_mode(state_of(request)):
        return signed_in(request)
    return render(request, "login.html.j2", user=None, error=None, username="")


@router.post("/review/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
) -> Response:
    state = state_of(request)
    if signin.proxy_mode(state):
        return signed_in(request)
    if not signin.csrf_ok(request, csrf_token):
        return forbidden(request)
    try:
        user = signin.sign_in(request, state, username.strip()[:128], password)
    except signin.SignInThrottled as exc:
        log.info("review page: sign-in throttled for %d s", exc.retry_after)
        minutes = max(1, round(exc.retry_after / 60))
        response = render(
            request,
            "login.html.j2",
            429,
            user=None,
            error=f"Too many failed sign-ins from here. Please try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}.",
            username=username.strip()[:128],
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        log.info("review page: a sign-in failed")
        return render(
            request,
            "login.html.j2",
            200,
            user=None,
            error=BAD_SIGN_IN,
            username=username.strip()[:128],
        )
    log.info("review page: %s signed in", user.practitioner)
    return redirect(request, "/review/")


@router.post("/review/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    if not signin.csrf_ok(request, csrf_token):
        return forbidden(request)
    signin.end_session(request)
    return redirect(request, "/review/login")


# --------------------------------------------------------------------------- worklist and task


@router.get("/review/")
def worklist(request: Request, priority: str = "all", owner: str = "", q: str = "") -> Response:
    user = signed_in(request)
    if not isinstance(user, signin.User):
        return user
    priority = priority if priority in ("early", "routine") else "all"
    chosen = request.query_params.get("scope")
    remembered = request.cookies.get(SCOPE_COOKIE)
    scope = chosen if chosen in SCOPES else remembered if remembered in SCOPES else "mine"
    owner, q = owner.strip()[:200], q.strip()[:200]
    state = state_of(request)
    try:
        view = worklist_view(
            state.backend,
            state.ruleset,
            today_london(state.now()),
            user=user.practitioner,
            scope=scope,
            owner=owner,
            query=q,
            priority=None if priority == "all" else priority,
        )
    except ServerError as exc:
        log.warning("review page: listing reviews failed: %s", exc)
        return unavailable(request, user)
    response = render(
        request,
        "worklist.html.j2",
        user=user,
        items=view.items,
        identities=view.identities,
        counts=view.counts,
        priority=priority,
        owner=owner,
        scope=scope,
        q=q,
        filter_error=view.owner_error,
        flash=signin.pop_flash(request),
    )
    if chosen in SCOPES:  # the list comes back as chosen, e.g. after a decision
        response.set_cookie(
            SCOPE_COOKIE,
            scope,
            path=f"{state.config.base_path}/review",
            secure=state.config.secure_cookies,
            httponly=True,
            samesite="lax",
        )
    return response


@dataclass(frozen=True)
class FieldError:
    """A form field in error: the id of its control and the message shown beside it."""

    field: str
    message: str


def _task_page(
    request: Request,
    user: signin.User,
    task_id: str,
    status: int = 200,
    errors: tuple[FieldError, ...] = (),
    form: dict[str, str] | None = None,
    warning: str | None = None,
) -> Response:
    """The task page; with `errors` in the NHS error pattern (summary, messages beside the
    fields, aria-invalid, "Error: " title) and the user's choices (`form`) kept."""
    state = state_of(request)
    try:
        detail = review.review_detail(state.backend, task_id, ruleset=state.ruleset)
    except ServerError as exc:
        log.warning("review page: reading Task/%s failed: %s", task_id, exc)
        return unavailable(request, user)
    except UserError:
        return not_found(request, user)
    today = today_london(state.now())
    try:
        patient = detail.item.patient or ""
        identity = read_identities(state.backend, [patient], today).get(patient)
        history = read_history(state.backend, patient, state.ruleset, today)
    except ServerError as exc:
        log.warning("review page: reading the patient of Task/%s failed: %s", task_id, exc)
        return unavailable(request, user)
    agreement_label, _ = agreement_words(state.ruleset)
    return render(
        request,
        "task.html.j2",
        status,
        user=user,
        identity=identity,
        history=history,
        history_rows=history_rows(history, state.ruleset),
        history_heading=state.ruleset.model.texts.history.heading,
        d=detail,
        item=detail.item,
        timeline=timeline(detail, state.ruleset),
        why=note_blocks(detail.clinician_note),
        leaflet=_leaflet(state, detail, identity.name if identity else None, today),
        reasons=state.ruleset.model.proposal.decline_reasons,
        errors=list(errors),
        field_errors={e.field: e.message for e in errors},
        form=form or {},
        warning=warning,
        agreement_label=agreement_label,
        before_deciding=before_deciding(state.ruleset),
    )


def _leaflet(
    state: ServiceState, detail: review.ReviewDetail, name: str | None, today: date
) -> dict[str, object]:
    """The patient's printable leaflet: its title, paragraphs (the proposal's own explanation),
    the patient's name as the server has it now (`read_identities`), who to contact
    (serve.toml's [leaflet]) and today's date as "2 December 2026"."""
    text = detail.patient_explanation
    return {
        "title": state.ruleset.model.texts.leaflet_title or f"About {short_name(state.ruleset)}",
        "paragraphs": [line.strip() for line in text.splitlines() if line.strip()],
        "name": name,
        "contacts": state.config.leaflet,
        "date": long_date(today),
    }


@router.get("/review/task/{task_id}")
def task_page(request: Request, task_id: str) -> Response:
    user = signed_in(request)
    if not isinstance(user, signin.User):
        return user
    return _task_page(request, user, task_id)


def _decide(
    request: Request,
    user: signin.User,
    task_id: str,
    action: str,
    reason: str = "",
    note: str = "",
) -> Response:
    """Accept or decline through `review.accept` / `review.decline`, as the CLI does; the
    confirmation (or who decided first, as a warning) in the ruleset's words."""
    state = state_of(request)
    referral = state.config.referral
    try:
        loaded = review.load_review(state.backend, task_id)
        now = state.now()
        if action == "accept":
            done = review.accept(
                state.backend,
                loaded,
                by=user.practitioner,
                now=now,
                tool_version=__version__,
                ips_service=referral.ips_service if referral else None,
                patient_agreed=True,
                ruleset=state.ruleset,
            )
            message = done.message
        else:
            declined = review.decline(
                state.backend,
                loaded,
                by=user.practitioner,
                reason_code=reason,
                note=note or None,
                now=now,
                tool_version=__version__,
                ruleset=state.ruleset,
            )
            message = declined.message
    except AlreadyDecided as exc:
        log.info("review page: Task/%s was already decided; nothing written", task_id)
        return _task_page(request, user, task_id, 409, warning=str(exc))
    except ConflictError:
        log.info("review page: Task/%s changed meanwhile; nothing written", task_id)
        return render(request, "conflict.html.j2", 409, user=user, task_id=task_id)
    except ServerError as exc:
        log.warning("review page: %s of Task/%s failed: %s", action, task_id, exc)
        return unavailable(request, user, writing=True)
    except ConfigError as exc:
        log.warning("review page: %s refused: %s", action, exc)
        return error(request, user, 503, "Referral not set up", str(exc))
    except (UnknownClinician, UnknownService) as exc:
        log.warning("review page: %s refused: %s; nothing written", action, exc)
        return error(request, user, 403, "Cannot record this decision", str(exc))
    except UserError as exc:
        log.warning("review page: %s refused: %s; nothing written", action, exc)
        return not_found(request, user)
    signin.flash(request, message)
    return redirect(request, "/review/")


@router.post("/review/task/{task_id}/accept")
def accept(
    request: Request,
    task_id: str,
    csrf_token: str = Form(""),
    patient_agreed: str = Form(""),
) -> Response:
    user = signed_in(request)
    if not isinstance(user, signin.User):
        return user
    if not signin.csrf_ok(request, csrf_token):
        return forbidden(request)
    if patient_agreed != "yes":
        _, missing = agreement_words(state_of(request).ruleset)
        problem = FieldError("patient-agreed", missing)
        return _task_page(request, user, task_id, 400, (problem,))
    return _decide(request, user, task_id, "accept")


@router.post("/review/task/{task_id}/decline")
def decline(
    request: Request,
    task_id: str,
    csrf_token: str = Form(""),
    reason: str = Form(""),
    note: str = Form(""),
) -> Response:
    user = signed_in(request)
    if not isinstance(user, signin.User):
        return user
    if not signin.csrf_ok(request, csrf_token):
        return forbidden(request)
    note = note.strip()[:2000]
    words = state_of(request).ruleset.model.texts.decisions
    kept = {"reason": reason, "note": note}
    if reason not in state_of(request).ruleset.model.proposal.decline_reasons:
        problem = FieldError("reason", words.reason_missing)
        return _task_page(request, user, task_id, 400, (problem,), {**kept, "reason": ""})
    if reason == "other" and not note:
        problem = FieldError("note", words.note_missing)
        return _task_page(request, user, task_id, 400, (problem,), kept)
    return _decide(request, user, task_id, "decline", reason, note)
