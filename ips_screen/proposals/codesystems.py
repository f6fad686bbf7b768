"""The project's own CodeSystems (decline reasons; IPS referral and screen priorities), kept as
FHIR JSON files in rules/fhir/ (installed with the package) for loading into a terminology or FHIR
server.

Regenerate the files after changing a code (a test checks they equal what these functions
return): ``python -c "from ips_screen.proposals.codesystems import write_codesystems as w; w()"``
"""

from __future__ import annotations

from pathlib import Path

import orjson

from ips_screen.codes import DECLINE_REASON_SYSTEM, IPS_REFERRAL, IPS_SYSTEM, PATIENT_AGREED
from ips_screen.proposals.common import PRIORITY_CODES, validated
from ips_screen.ruleset.loader import RULES_DIR, CompiledRuleset, load_ruleset

FHIR_DIR = RULES_DIR / "fhir"


def decline_reason_codesystem(ruleset: CompiledRuleset | None = None) -> dict:
    """CodeSystem for Task.statusReason when a clinician declines a proposal: the reasons the
    ruleset declares (`proposal.decline_reasons`; the file is the default ruleset's)."""
    reasons = (ruleset or load_ruleset()).model.proposal.decline_reasons
    return validated(
        {
            "resourceType": "CodeSystem",
            "id": "decline-reason",
            "url": DECLINE_REASON_SYSTEM,
            "name": "IpsDeclineReason",
            "title": "Reasons a clinician declines an IPS proposal",
            "status": "active",
            "experimental": False,
            "publisher": "ips-screen",
            "description": (
                "Why a proposed referral to Individual Placement and Support (IPS) was declined. "
                "No SNOMED CT concept exists for these, so the project defines its own codes."
            ),
            "caseSensitive": True,
            "content": "complete",
            "count": len(reasons),
            "concept": [{"code": c, "display": d} for c, d in reasons.items()],
        }
    )


def ips_codesystem() -> dict:
    """CodeSystem of the project's own concepts: the IPS referral, the screen's priorities and
    the patient's agreement to the referral."""
    concepts = [
        {
            "code": IPS_REFERRAL["code"],
            "display": IPS_REFERRAL["display"],
            "definition": (
                "Referral to an Individual Placement and Support (IPS) supported employment "
                "service. No SNOMED CT concept exists; sent beside SNOMED CT 18781004."
            ),
        },
        {
            "code": PRIORITY_CODES["early"]["code"],
            "display": PRIORITY_CODES["early"]["display"],
            "definition": "The screen found a recent start (the default ruleset: the current spell "
            "out of work began recently): offer early.",
        },
        {
            "code": PRIORITY_CODES["routine"]["code"],
            "display": PRIORITY_CODES["routine"]["display"],
            "definition": "Not early: the start is older, or unknown.",
        },
        {
            "code": PATIENT_AGREED["code"],
            "display": PATIENT_AGREED["display"],
            "definition": (
                "The patient agreed to be referred as the screen's proposal suggests (the "
                "default ruleset: to an Individual Placement and Support (IPS) service), as "
                "confirmed by the clinician who accepted the proposal: an Observation with "
                "valueBoolean true, performer the clinician, basedOn the proposal, linked from "
                "the order's supportingInfo. No SNOMED CT concept exists for this agreement."
            ),
        },
    ]
    return validated(
        {
            "resourceType": "CodeSystem",
            "id": "ips-screen",
            "url": IPS_SYSTEM,
            "name": "IpsScreen",
            "title": "ips-screen project concepts",
            "status": "active",
            "experimental": False,
            "publisher": "ips-screen",
            "description": (
                "Concepts the ips-screen project needs that no standard code system has."
            ),
            "caseSensitive": True,
            "content": "complete",
            "count": len(concepts),
            "concept": concepts,
        }
    )


CODESYSTEM_FILES = {
    "CodeSystem-decline-reason.json": decline_reason_codesystem,
    "CodeSystem-ips-screen.json": ips_codesystem,
}


def write_codesystems(folder: Path = FHIR_DIR) -> list[Path]:
    """Write the CodeSystems as JSON files (indented, newline at end); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in CODESYSTEM_FILES.items():
        path = folder / name
        path.write_bytes(orjson.dumps(make(), option=orjson.OPT_INDENT_2) + b"\n")
        written.append(path)
    return written
