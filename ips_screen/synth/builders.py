"""FHIR R4 resource builders for one synthetic patient's records (plain dicts, JSON-ready).

Every resource gets a random-but-reproducible id from the generator's `random.Random` and
references its patient as ``Patient/<id>``. Times are written in Europe/London with the offset
of the day (GMT or BST), during surgery hours, so every record falls on the intended London day.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from functools import cache

from ips_screen.codes import DECLINE_REASON_SYSTEM, TASK_CODE_SYSTEM
from ips_screen.dates import LONDON
from ips_screen.synth.vocab import UCUM, Code

HL7 = "http://terminology.hl7.org/CodeSystem"
OBSERVATION_CATEGORY = f"{HL7}/observation-category"


@cache
def default_decline_reasons() -> dict[str, str]:
    """The default ruleset's decline reasons (code -> display)."""
    from ips_screen.ruleset.loader import load_ruleset

    return dict(load_ruleset().model.proposal.decline_reasons)


def new_id(rng: random.Random) -> str:
    """A version-4 UUID drawn from `rng` (never from the OS), so reruns give the same ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def pick(rng: random.Random, codes: Sequence[Code]) -> Code:
    """One code, drawn by its weight."""
    return rng.choices(codes, weights=[c[3] for c in codes])[0]


def concept(*codes: Code | dict) -> dict:
    """A CodeableConcept of `Code` tuples or Coding dicts; its text is the first display."""
    coding = [
        c if isinstance(c, dict) else {"system": c[0], "code": c[1], "display": c[2]} for c in codes
    ]
    return {"coding": coding, "text": coding[0]["display"]}


def status(system: str, code: str) -> dict:
    """A status CodeableConcept (clinicalStatus, verificationStatus): one coding, no text."""
    return {"coding": [{"system": f"{HL7}/{system}", "code": code}]}


def _category(system: str, code: str, display: str) -> list[dict]:
    return [{"coding": [{"system": system, "code": code, "display": display}]}]


VITAL_SIGNS = _category(OBSERVATION_CATEGORY, "vital-signs", "Vital signs")
SURVEY = _category(OBSERVATION_CATEGORY, "survey", "Survey")
SOCIAL_HISTORY = _category(OBSERVATION_CATEGORY, "social-history", "Social History")
PROBLEM = _category(f"{HL7}/condition-category", "problem-list-item", "Problem List Item")
TASK_APPROVE = {
    "system": TASK_CODE_SYSTEM,
    "code": "approve",
    "display": "Activate/approve the focal resource",
}


def quantity(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


class Builder:
    """Collects one patient's resources; each method appends one and returns it."""

    def __init__(self, rng: random.Random, patient_id: str) -> None:
        self.rng = rng
        self.patient = {"reference": f"Patient/{patient_id}"}
        self.resources: list[dict] = []

    def stamp(self, day: date) -> str:
        """A London dateTime on `day` between 08:00 and 18:00, to the minute."""
        minutes = self.rng.randrange(8 * 60, 18 * 60)
        at = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=LONDON)
        return at.isoformat()

    def _add(self, rtype: str, body: dict) -> dict:
        resource = {"resourceType": rtype, "id": new_id(self.rng), **body}
        self.resources.append(resource)
        return resource

    def condition(
        self,
        code: Code,
        onset: date,
        *,
        abatement: date | None = None,
        category: list[dict] = PROBLEM,
    ) -> dict:
        when = self.stamp(onset)
        body: dict = {
            "clinicalStatus": status("condition-clinical", "resolved" if abatement else "active"),
            "verificationStatus": status("condition-ver-status", "confirmed"),
            "category": category,
            "code": concept(code),
            "subject": self.patient,
            "onsetDateTime": when,
            "recordedDate": when,
        }
        if abatement is not None:
            body["abatementDateTime"] = self.stamp(abatement)
        return self._add("Condition", body)

    def observation(self, code: Code, day: date, **fields: object) -> dict:
        """An Observation (status final); `fields` adds value[x], component, category, note."""
        body = {"status": "final", "code": concept(code), "subject": self.patient}
        body["effectiveDateTime"] = self.stamp(day)
        body.update(fields)
        return self._add("Observation", body)

    def procedure(self, code: Code, day: date, **fields: object) -> dict:
        body = {"status": "completed", "code": concept(code), "subject": self.patient}
        body["performedDateTime"] = self.stamp(day)
        body.update(fields)
        return self._add("Procedure", body)

    def fit_note_document(self, code: Code, day: date, until: date, words: str) -> dict:
        """The fit note (Med3) document, typed with the fit-note code, covering day..until."""
        when = self.stamp(day)
        return self._add(
            "DocumentReference",
            {
                "status": "current",
                "docStatus": "final",
                "type": concept(code),
                "subject": self.patient,
                "date": when,
                "description": f"Fit note (Med3): {words}",
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/pdf",
                            "title": "Statement of fitness for work",
                            "creation": when,
                        }
                    }
                ],
                "context": {"period": {"start": day.isoformat(), "end": until.isoformat()}},
            },
        )

    def service_request(
        self,
        codes: Sequence[Code | dict],
        day: date,
        *,
        status: str,
        intent: str,
        reasons: Sequence[dict] = (),
        updated: date | None = None,
    ) -> dict:
        body: dict = {
            "status": status,
            "intent": intent,
            "code": concept(*codes),
            "subject": self.patient,
            "authoredOn": self.stamp(day),
        }
        if reasons:
            body["reasonReference"] = [{"reference": f"Condition/{r['id']}"} for r in reasons]
        if updated is not None:
            body["meta"] = {"lastUpdated": self.stamp(updated)}
        return self._add("ServiceRequest", body)

    def declined_review(self, request: dict, proposed: date, declined: date) -> dict:
        """The review Task of an IPS proposal, rejected by the clinician with a reason."""
        reasons = default_decline_reasons()
        reason = self.rng.choice(sorted(reasons))
        return self._add(
            "Task",
            {
                "status": "rejected",
                "intent": "proposal",
                "code": concept(TASK_APPROVE),
                "focus": {"reference": f"ServiceRequest/{request['id']}"},
                "for": self.patient,
                "authoredOn": self.stamp(proposed),
                "lastModified": self.stamp(declined),
                "description": "Review the proposed referral to Individual Placement and Support",
                "statusReason": concept(
                    {
                        "system": DECLINE_REASON_SYSTEM,
                        "code": reason,
                        "display": reasons[reason],
                    }
                ),
            },
        )

    def encounter(self, code: Code, day: date) -> dict:
        start = datetime.fromisoformat(self.stamp(day))
        end = start + timedelta(minutes=self.rng.choice((10, 10, 15, 20)))
        return self._add(
            "Encounter",
            {
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                    "display": "ambulatory",
                },
                "type": [concept(code)],
                "subject": self.patient,
                "period": {"start": start.isoformat(), "end": end.isoformat()},
            },
        )
