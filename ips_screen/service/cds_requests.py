"""The CDS Hooks 2.0 request bodies the service accepts, as strict pydantic models: the
patient-view call and the feedback on its cards.

What the specification marks REQUIRED is required here: a call needs `hook`, a UUID
`hookInstance` and a `context` with `userId` (``Type/id``) and `patientId`; `fhirAuthorization`
needs `fhirServer` beside it and its own required fields (`access_token`, `token_type` Bearer,
`expires_in`, `scope`, `subject`). A feedback item needs the card's UUID, its `outcome`, an
`outcomeTimestamp`, and `acceptedSuggestions` when the outcome is accepted. Values must have the
JSON type the specification gives (no coercion); fields the service does not read are ignored
(clients may send extensions). `parsed` turns the first problem into a one-line `BadRequest`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ips_screen.service.state import BadRequest

MAX_FEEDBACK_ITEMS = 100
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
_USER = r"^[A-Z][A-Za-z]{0,63}/[A-Za-z0-9\-.]{1,64}$"

# What each constrained field must be, for the 400 message ("<field> must be <this>").
MUST_BE = {
    "hook": "patient-view (this service answers the patient-view hook only)",
    "hookInstance": "a UUID",
    "fhirServer": "a URL string",
    "fhirAuthorization": "an object",
    "fhirAuthorization.token_type": "Bearer",
    "fhirAuthorization.expires_in": "a whole number of seconds",
    "context": "an object",
    "context.userId": "a FHIR reference such as Practitioner/<id>",
    "context.patientId": "a FHIR id",
    "context.encounterId": "a FHIR id",
    "prefetch": "an object",
    "feedback": f"a list of 1 to {MAX_FEEDBACK_ITEMS} feedback items",
    "card": "the UUID of a card",
    "outcome": "accepted or overridden",
    "outcomeTimestamp": "an ISO 8601 date and time",
    "acceptedSuggestions": "a list of {id} objects",
}


def _uuid(value: str) -> str:
    if not _UUID.match(value):
        raise ValueError("not a UUID")
    return value


def _timestamp(value: str) -> str:
    try:
        ok = "T" in value.upper() and datetime.fromisoformat(value) is not None
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("not an ISO 8601 date and time")
    return value


def _bearer(value: str) -> str:
    if value.lower() != "bearer":
        raise ValueError("not Bearer")
    return value


Uuid = Annotated[str, AfterValidator(_uuid)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=False)


class FhirAuthorization(_Body):
    access_token: Text
    token_type: Annotated[str, AfterValidator(_bearer)]
    expires_in: Annotated[int, Field(ge=0)]
    scope: Text
    subject: Text
    patient: str | None = None


class PatientViewContext(_Body):
    user_id: Annotated[str, Field(alias="userId", pattern=_USER)]
    patient_id: Annotated[str, Field(alias="patientId", pattern=_FHIR_ID)]
    encounter_id: Annotated[str | None, Field(alias="encounterId", pattern=_FHIR_ID)] = None


class PatientViewCall(_Body):
    hook: Literal["patient-view"]
    hook_instance: Annotated[Uuid, Field(alias="hookInstance")]
    context: PatientViewContext
    fhir_server: Annotated[Text | None, Field(alias="fhirServer")] = None
    fhir_authorization: Annotated[FhirAuthorization | None, Field(alias="fhirAuthorization")] = None
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_authorization(self) -> PatientViewCall:
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


class AcceptedSuggestion(_Body):
    id: Text


class Coding(_Body):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class OverrideReason(_Body):
    reason: Coding | None = None
    user_comment: Annotated[str | None, Field(alias="userComment")] = None


class FeedbackItem(_Body):
    card: Uuid
    outcome: Literal["accepted", "overridden"]
    outcome_timestamp: Annotated[str, AfterValidator(_timestamp), Field(alias="outcomeTimestamp")]
    accepted_suggestions: Annotated[
        list[AcceptedSuggestion] | None, Field(alias="acceptedSuggestions", min_length=1)
    ] = None
    override_reason: Annotated[OverrideReason | None, Field(alias="overrideReason")] = None

    @model_validator(mode="after")
    def _suggestions_when_accepted(self) -> FeedbackItem:
        if self.outcome == "accepted" and self.accepted_suggestions is None:
            raise ValueError("acceptedSuggestions is required when the outcome is accepted")
        return self


class Feedback(_Body):
    feedback: Annotated[list[FeedbackItem], Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)]


Model = TypeVar("Model", bound=_Body)


def _message(exc: ValidationError) -> str:
    """The first problem, in one line that names the field (never echoes the value)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in first["loc"]]
    if loc and loc[0] == "feedback" and len(loc) > 1 and loc[1].isdigit():
        where = f"feedback[{loc[1]}]"
        loc = loc[2:]
    else:
        where = ""
    field = ".".join(loc)
    name = f"{where}.{field}" if where and field else where or field
    if first["type"] == "missing":
        return f"{name} is required"
    if first["type"] == "value_error" and not field:
        # a model rule: its message names the fields
        text = str(first.get("ctx", {}).get("error", first["msg"]))
        return f"{where}: {text}" if where else text
    rule = MUST_BE.get(field)
    if rule is None:
        return f"{name} is malformed"
    return f"{name} must be {rule}"


def parsed(model: type[Model], body: dict[str, Any]) -> Model:
    """`body` as `model`; BadRequest naming the first field at fault otherwise."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(_message(exc)) from None
