"""The proposal's words, as `ips_screen.presentation` renders them (kept for its importers)."""

from __future__ import annotations

from ips_screen.presentation.labels import flag_text, reason_text
from ips_screen.presentation.notes import (
    clinician_note,
    patient_explanation,
    reasons_in_brief,
    task_description,
)

__all__ = [
    "clinician_note",
    "flag_text",
    "patient_explanation",
    "reason_text",
    "reasons_in_brief",
    "task_description",
]
