"""CDS Hooks 2.0 endpoints: discovery, the patient-view service `ips-screen`, and its feedback.

Every call to the service and its feedback must carry the EHR's bearer JWT, verified against the
exact endpoint URL built from `public_base_url` (never the Host header); a refused token gets 401
with the body ``{}`` and its reason goes to the log only. A request without what CDS Hooks 2.0
requires (cds_requests.py) is 400 with a short ``{"error": ...}`` naming the field; data the
service cannot get is 412; feedback whose review on the practice server is not the card
patient's is 409 (feedback.py). Logs name resource ids only.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ips_screen.engine import evaluate
from ips_screen.facts.extract import patient_of
from ips_screen.presentation.labels import service_description, service_title
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service import feedback
from ips_screen.service.cards import blocking_referral, build_card, by_ref, pending_proposal
from ips_screen.service.cds_requests import PatientViewCall, parsed
from ips_screen.service.ehr_auth import AuthRejected
from ips_screen.service.prefetch import PREFETCH, MissingData, gather
from ips_screen.service.state import BadRequest, CardState, ServiceState
from ips_screen.sources.population import collect_resources

log = logging.getLogger("ips_screen.service")
router = APIRouter()

SERVICE_ID = "ips-screen"
SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
FEEDBACK_PATH = f"{SERVICE_PATH}/feedback"
MAX_BODY = 20 * 1024 * 1024


def discovery_document(ruleset: CompiledRuleset) -> dict:
    """The CDS Hooks discovery response; the service's title and description are the ruleset's
    (`texts:`)."""
    service = {
        "hook": "patient-view",
        "id": SERVICE_ID,
        "title": service_title(ruleset),
        "description": service_description(ruleset),
        "prefetch": PREFETCH,
    }
    return {"services": [service]}


def json_response(status: int, body: object) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def authenticate(state: ServiceState, request: Request, path: str) -> dict[str, Any] | None:
    """The verified claims ({} when EHR authentication is disabled), or None (log says why)."""
    if state.verifier is None:
        return {}
    try:
        return state.verifier.verify(request.headers.get("authorization"), state.url(path))
    except AuthRejected as exc:
        log.warning("refused a call to %s: %s", path, exc.reason)
        return None


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (BadRequest otherwise); at most MAX_BODY bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest("request body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest("request body too large")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object")
    return body


@router.get("/cds-services")
def discovery(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    return json_response(200, discovery_document(state.ruleset))


async def _call(request: Request, path: str, handler: Any) -> Response:
    state: ServiceState = request.app.state.service
    claims = await run_in_threadpool(authenticate, state, request, path)
    if claims is None:
        return json_response(401, {})
    try:
        body = await read_json(request)
        status, answer = await run_in_threadpool(handler, state, body, claims)
    except BadRequest as exc:
        log.info("bad request to %s: %s", path, exc)
        return json_response(400, {"error": str(exc)})
    return json_response(status, answer)


@router.post(SERVICE_PATH)
async def patient_view(request: Request) -> Response:
    return await _call(request, SERVICE_PATH, handle_patient_view)


@router.post(FEEDBACK_PATH)
async def feedback_endpoint(request: Request) -> Response:
    return await _call(request, FEEDBACK_PATH, feedback.handle_feedback)


def handle_patient_view(
    state: ServiceState, body: dict[str, Any], claims: dict[str, Any]
) -> tuple[int, dict]:
    call = parsed(PatientViewCall, body)
    patient_id = call.context.patient_id
    auth = call.fhir_authorization
    try:
        resources = gather(
            patient_id,
            call.prefetch,
            call.fhir_server,
            auth.access_token if auth else None,
            state.config.ehr_fhir_servers,
            limits=state.config.ehr_read_limits,
        )
    except MissingData as exc:
        log.info("patient-view Patient/%s: 412: %s", patient_id, exc)
        return 412, {"error": str(exc)}
    ruleset = state.ruleset
    facts = collect_resources(resources, ruleset, skip_invalid=True).patients.get(patient_id)
    if facts is None:
        return 412, {"error": "the Patient is not in the data"}
    raw = by_ref(
        r for r in resources if r.get("resourceType") != "Patient" and patient_of(r) == patient_id
    )
    as_of = state.today()
    blocking = blocking_referral(raw, ruleset, as_of)
    if blocking is not None:
        log.info("patient-view Patient/%s: no card: %s is an IPS referral", patient_id, blocking)
        return 200, {"cards": []}
    pending = pending_proposal(raw, ruleset, patient_id)
    decision = None
    if pending is None:
        decision = evaluate(ruleset, facts, as_of)
        if decision.outcome != "propose":
            log.info("patient-view Patient/%s: no card: %s", patient_id, decision.outcome)
            return 200, {"cards": []}
    review_url = None
    if state.config.review_page is not None:
        path = f"/review/task/{pending.task['id']}" if pending else "/review/"
        review_url = state.url(path)
    result = build_card(
        ruleset,
        patient_id,
        raw,
        decision=decision,
        pending=pending,
        review_url=review_url,
        today=as_of,
    )
    state.cards.put(
        result.card["uuid"],
        CardState(
            patient_id=patient_id,
            suggestion=result.card["suggestions"][0]["uuid"],
            task_id=result.task_id,
            user_id=call.context.user_id,
            iss=claims.get("iss"),
            decision=result.decision,
        ),
    )
    what = f"pending Task/{result.task_id}" if result.task_id else "live proposal"
    log.info("patient-view Patient/%s: card for %s", patient_id, what)
    return 200, {"cards": [result.card]}
