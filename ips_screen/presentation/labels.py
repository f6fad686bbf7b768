"""Plain words for reason and flag names (the name itself when the ruleset gives none)."""

from __future__ import annotations

REASONS: dict[str, str] = {
    "deceased": "recorded as having died",
    "outside-working-age": "under 18, or at or over State Pension age",
    "end-of-life": "receiving palliative or end-of-life care",
    "ips-referral-open": (
        "already has an open or recent IPS referral (or a proposal awaiting review)"
    ),
    "ips-declined": "IPS was declined recently, so it is not offered again yet",
    "no-chronic-pain": "no chronic pain recorded",
    "in-work": "recorded as in work",
    "retired": "recorded as retired",
    "student": "recorded as a student",
    "employment-status-unknown": (
        "no employment status recorded, and the fit notes do not show time off work"
    ),
    "birth-date-missing": "no birth date recorded, so working age cannot be checked",
}
FLAGS: dict[str, str] = {
    "employment-status-unconfirmed": (
        "employment status not confirmed by a recent record: please ask the patient and record it"
    ),
}


def reason_text(reason: str) -> str:
    """One line of plain words for a reason name (the name itself when unknown)."""
    return REASONS.get(reason, reason)


def flag_text(flag: str) -> str:
    """One line of plain words for a flag name (the name itself when unknown)."""
    return FLAGS.get(flag, flag)
