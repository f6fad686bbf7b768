"""What `review list` and `review show` print about who the patient is and their IPS history.

A clinician's terminal is a clinician screen: names, dates of birth and NHS numbers are shown here
(read from the FHIR server at display time), never in batch outputs or logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ips_screen.ruleset.loader import CompiledRuleset
    from ips_screen.writeback.ips_history import PatientHistory
    from ips_screen.writeback.patient_identity import PatientIdentity
    from ips_screen.writeback.review_read import ReviewItem
    from ips_screen.writeback.worklist import Counts

INVALID = "(NOT A VALID NHS NUMBER)"


def born(identity: PatientIdentity | None) -> str:
    """ "1980-01-01 (46 y)", or "-"."""
    if identity is None or not identity.birth_date:
        return "-"
    return identity.birth_date + (f" ({identity.age} y)" if identity.age is not None else "")


def nhs_number(identity: PatientIdentity | None) -> str:
    """ "943 476 5919", flagged when its check digit is wrong, or "-"."""
    if identity is None or not identity.nhs_number:
        return "-"
    return identity.nhs_number + ("" if identity.nhs_number_valid else f" {INVALID}")


def name(identity: PatientIdentity | None) -> str:
    if identity is None:
        return "-"
    if not identity.found:
        return "(patient not found)"
    return identity.name or "(no name recorded)"


def counts_line(counts: Counts) -> str:
    return (
        f"{counts.open} open; in the last 30 days: {counts.deferred} deferred, "
        f"{counts.accepted} accepted, {counts.declined} declined"
    )


def format_worklist(
    items: list[ReviewItem],
    identities: dict[str, PatientIdentity],
    counts: Counts | None = None,
) -> str:
    """An aligned table (task, waiting since, priority, name, born, NHS number, patient id,
    reason) in the worklist's order, and the counts."""
    if not items:
        return "\n".join(["No open reviews.", *([counts_line(counts)] if counts else [])])
    header = ("TASK", "SINCE", "PRIORITY", "NAME", "BORN", "NHS NUMBER", "PATIENT", "REASON")
    rows = [header]
    for i in items:
        who = identities.get(i.patient or "")
        rows.append(
            (
                f"Task/{i.task_id}",
                (i.authored or "")[:10] or "-",
                i.priority or "-",
                name(who),
                born(who),
                nhs_number(who),
                i.patient or "-",
                i.reason,
            )
        )
    widths = [max(len(row[n]) for row in rows) for n in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]
    noun = "review" if len(items) == 1 else "reviews"
    tail = counts_line(counts) if counts else f"{len(items)} open {noun}"
    return "\n".join([*lines, tail])


def identity_lines(identity: PatientIdentity | None) -> list[str]:
    """The lines that say who the patient is, first in `review show`."""
    return [
        f"Name: {name(identity)}",
        f"Born: {born(identity)}",
        f"NHS number: {nhs_number(identity)}",
    ]


def history_lines(history: PatientHistory, ruleset: CompiledRuleset) -> list[str]:
    """The history section (its heading the ruleset's): one line per event, newest first."""
    from ips_screen.presentation.history import history_line

    lines = [f"  {history_line(e, ruleset, history.names)}" for e in history.entries]
    return [ruleset.model.texts.history.heading, *(lines or ["  (none)"])]
