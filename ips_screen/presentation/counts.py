"""Counts in words: "1 patient", "2 patients" (the CLI's lines, the report)."""

from __future__ import annotations


def plural(count: object, singular: str, many: str | None = None) -> str:
    """The noun for a count: "patient" for 1, "patients" otherwise (`many`: an irregular one)."""
    return singular if int(count or 0) == 1 else many or f"{singular}s"


def counted(count: int, singular: str, many: str | None = None) -> str:
    """ "1 patient", "2 patients": the count and its noun."""
    return f"{count:d} {plural(count, singular, many)}"
