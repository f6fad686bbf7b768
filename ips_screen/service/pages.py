"""Rendering for the review page: templates, security headers, redirects, the signed-in check,
error pages, and the shapes the task page shows (timeline, note blocks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from ips_screen import __version__
from ips_screen.presentation.labels import (
    care_plan_words,
    category_text,
    proposal_title,
    review_headings,
    short_name,
)
from ips_screen.presentation.plain_text import html_value
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service import signin
from ips_screen.service.state import ServiceState
from ips_screen.writeback import review

log = logging.getLogger("ips_screen.service")
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    finalize=html_value,  # names and notes others wrote cannot reorder or hide what is shown
    trim_blocks=True,
    lstrip_blocks=True,
)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    state = state_of(request)
    html = TEMPLATES.get_template(name).render(
        base=state.config.base_path,
        csrf=signin.csrf_token(request),
        version=__version__,
        words=_ruleset_words(state.ruleset),
        **context,
    )
    return HTMLResponse(html, status, headers=HEADERS)


def _ruleset_words(ruleset: CompiledRuleset) -> dict[str, str]:
    """What every page calls the offer, from the ruleset's texts: its short name ("IPS"), its
    name ("Individual Placement and Support (IPS)") and the care plan an accept creates."""
    return {
        "short": short_name(ruleset),
        "offer": proposal_title(ruleset),
        "care_plan": care_plan_words(ruleset)[0],
    }


def redirect(request: Request, path: str) -> Response:
    target = state_of(request).config.base_path + path
    return RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})


def signed_in(request: Request) -> signin.User | Response:
    """The user, or the response to send instead (sign-in page, or 401 in proxy mode)."""
    state = state_of(request)
    user = signin.current_user(request, state)
    if user is not None:
        return user
    if signin.proxy_mode(state):
        message = (
            "Sign-in is handled by the practice's single sign-on, and this request did not come "
            "through it. Open the review page from its usual address."
        )
        return error(request, None, 401, "Not signed in", message)
    return redirect(request, "/review/login")


def error(
    request: Request, user: signin.User | None, status: int, title: str, message: str
) -> Response:
    return render(request, "error.html.j2", status, user=user, title=title, message=message)


def forbidden(request: Request) -> Response:
    log.warning("review page: a form without a valid CSRF token was refused")
    message = (
        "This form could not be accepted: it has expired or did not come from this page. "
        "Go back, reload the page and try again."
    )
    return error(request, None, 403, "Form expired", message)


def unavailable(request: Request, user: signin.User, *, writing: bool = False) -> Response:
    then = "nothing was changed." if writing else "try again in a moment."
    message = f"The practice FHIR server did not answer; {then}"
    return error(request, user, 502, "FHIR server unavailable", message)


def not_found(request: Request, user: signin.User) -> Response:
    message = "There is no IPS proposal review with this id."
    return error(request, user, 404, "Review not found", message)


def timeline(detail: review.ReviewDetail, ruleset: CompiledRuleset) -> list[dict[str, str]]:
    fit_list = ruleset.model.proposal.supporting_info.codelist
    addressed, reasons, supporting = review_headings(ruleset)
    rows = []
    for kind, evidence in (
        (addressed or reasons, detail.addressed),
        (reasons, detail.reasons),
        (supporting, detail.supporting),
        ("Not found", detail.not_found),
    ):
        for e in evidence:
            what = e.display or e.ref
            if e.value and e.value != e.display:
                what = f"{what}: {e.value}"
            fitness = category_text(fit_list, e.fitness, ruleset) if e.fitness else ""
            facts = e.status or fitness
            rows.append(
                {
                    "date": e.date or "",
                    "kind": kind,
                    "what": (e.words or what) if e.found else "not on the server",
                    "facts": facts or "",
                    "ref": ", ".join((e.ref, *e.same_as)),
                }
            )
    return sorted(rows, key=lambda r: (r["date"] or "9999", r["kind"], r["ref"]))


def note_blocks(text: str) -> list[tuple[str, str]]:
    blocks = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            blocks.append(("li", line[2:]) if line.startswith("- ") else ("p", line))
    return blocks
