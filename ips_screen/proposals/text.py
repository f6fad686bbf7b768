"""Plain-language text for proposals, written from a Decision's trace and the ruleset.

The clinician's note says why this patient was suggested (the pain evidence with its clinical
terms, the employment evidence or the fit-note proxy, the priority and any flags); the patient's
explanation comes from the ruleset. Both are built only from the trace and the ruleset, which hold
no names, birth dates, addresses or NHS numbers: keep it so (no Patient fields are read here).
"""

from __future__ import annotations

import re

from ips_screen.engine.decision import Decision, Step
from ips_screen.ruleset.loader import CompiledRuleset, walk_criteria
from ips_screen.ruleset.model import Criterion, LatestCategory, Records

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

# "<display> (<Type/id>, <YYYY-MM-DD|undated>)", as the engine lists records in a step's detail.
_LISTED = re.compile(
    r"(?P<display>.+?) \((?P<ref>[A-Z][A-Za-z]+/[^,\s()]+), (?P<when>\d{4}-\d{2}-\d{2}|undated)\)"
    r"(?:; |$)"
)
_LATEST = re.compile(r"^latest evidence (?P<when>\d{4}-\d{2}-\d{2}): (?P<cats>[^()]+?) \(")
_BEGAN = re.compile(r"began (?P<when>\d{4}-\d{2}-\d{2})")
_COUNT = re.compile(r"^(?P<n>\d+) record\(s\)")


def reason_text(reason: str) -> str:
    """One line of plain words for a reason name (the name itself when unknown)."""
    return REASONS.get(reason, reason)


def flag_text(flag: str) -> str:
    """One line of plain words for a flag name (the name itself when unknown)."""
    return FLAGS.get(flag, flag)


def patient_explanation(ruleset: CompiledRuleset) -> str:
    """The explanation for the patient (ServiceRequest.patientInstruction), from the ruleset."""
    return ruleset.model.proposal.patient_explanation.strip()


def task_description(decision: Decision) -> str:
    """One line for the review Task: why, and the screen's priority."""
    line = f"Offer IPS: chronic pain and out of work ({decision.priority or 'routine'})"
    if "employment-status-unconfirmed" in decision.flags:
        line += "; confirm employment status"
    return line


def clinician_note(decision: Decision, ruleset: CompiledRuleset) -> str:
    """Why this patient was suggested, in plain words (ServiceRequest.note)."""
    model = ruleset.model
    lines = [
        "Why this patient was suggested for Individual Placement and Support (IPS) "
        f"(screen {model.id} {model.version}, as of {decision.as_of}):"
    ]
    lines.extend(f"- {label}: {text}" for label, text in _reasons(decision, ruleset))
    lines.append(f"- Priority: {_priority(decision, ruleset)}")
    lines.extend(f"- Flag ({flag}): {flag_text(flag)}." for flag in decision.flags)
    summary = model.proposal.clinician_summary.strip()
    if summary:
        lines.extend(["", summary])
    return "\n".join(lines)


def reasons_in_brief(decision: Decision, ruleset: CompiledRuleset) -> str:
    """The evidence behind a proposal in plain words, on one line (the practice report)."""
    parts = [f"{label}: {text.rstrip('.')}" for label, text in _reasons(decision, ruleset)]
    return ". ".join(parts) + "." if parts else ""


# --- helpers -----------------------------------------------------------------------------------


def _reasons(decision: Decision, ruleset: CompiledRuleset) -> list[tuple[str, str]]:
    """(label, plain words) for each of the proposal's reason criteria."""
    model = ruleset.model
    out = []
    for name in model.proposal.reason_criteria:
        step = decision.step(name)
        if step is None:
            continue
        rule = _rule(ruleset, name)
        if isinstance(rule, LatestCategory):
            out.append(("Employment", _employment(step, rule)))
        else:
            label = "Chronic pain" if name == model.proposal.pain_criterion else name
            out.append((label, _evidence(step, ruleset)))
    return out


def _rule(ruleset: CompiledRuleset, rule_id: str) -> Criterion | None:
    for inclusion in ruleset.model.criteria:
        for rule in walk_criteria(inclusion.rule):
            if rule.id == rule_id:
                return rule
    return None


def _listed(detail: str) -> list[tuple[str, str, str]]:
    """(display, ref, date) of the records a step's detail lists."""
    _, sep, listing = detail.partition(": ")
    if not sep:
        return []
    return [(m["display"], m["ref"], m["when"]) for m in _LISTED.finditer(listing)]


def _terms(listed: list[tuple[str, str, str]]) -> str:
    """'term (date); ...', each once (a coded entry and its document say the same)."""
    return "; ".join(dict.fromkeys(f"{display} ({when})" for display, _, when in listed))


def _evidence(step: Step, ruleset: CompiledRuleset) -> str:
    """The clinical terms of the records that made a criterion pass, with what each shows."""
    held = [p for p in step.parts if p.status == "pass"] if step.parts else [step]
    out = []
    for part in held:
        rule = _rule(ruleset, part.id)
        why = rule.description if rule is not None and rule.description else part.id
        terms = _terms(_listed(part.detail))
        out.append(f"{terms} — {why}" if terms else why)
    return "; ".join(out) + "."


def _employment(step: Step, rule: LatestCategory) -> str:
    if not step.parts:  # passed on recorded evidence
        found = _LATEST.match(step.detail)
        if found is None:
            return f"{step.detail}."
        said = f"recorded as {found['cats'].replace('-', ' ')} on {found['when']}"
        if "older than" in step.detail:
            return (
                f"{said}, more than {rule.recent_months} months ago — please confirm and record "
                "their current employment status."
            )
        return f"{said}."
    if step.detail.startswith("conflicting"):
        why = "conflicting employment status records on the same day"
    elif (latest := _LATEST.match(step.detail)) is not None:
        why = (
            f"the latest recorded employment status ({latest['cats'].replace('-', ' ')}, "
            f"{latest['when']}) is more than {rule.recent_months} months old"
        )
    else:
        why = "no recorded employment status"
    count, months, listed = _fit_notes(step, rule)
    text = (
        f"{why}: {count} fit notes in the last {months} months, at least one not fit for work — "
        "please confirm and record their employment status."
    )
    return f"{text} Fit notes: {_terms(listed)}." if listed else text


def _fit_notes(step: Step, rule: LatestCategory) -> tuple[int, int, list[tuple[str, str, str]]]:
    """Fit notes as the fallback's counting rule counts them, its window, the records listed."""
    records = [r for r in walk_criteria(rule.otherwise.criterion) if isinstance(r, Records)]
    counting = max(records, key=lambda r: r.min_count) if records else None
    months = counting.within_months if counting and counting.within_months is not None else 12
    count, listed = len(step.refs), []
    stack = list(step.parts)
    while stack:
        part = stack.pop(0)
        stack.extend(part.parts)
        found = _COUNT.match(part.detail)
        if found and counting is not None and part.id == counting.id:
            count = int(found["n"])
        listed.extend(_listed(part.detail))
    return count, months, sorted(set(listed), key=lambda t: (t[2], t[1]))


def _priority(decision: Decision, ruleset: CompiledRuleset) -> str:
    spec = ruleset.model.priority
    months = spec.early_within_months if spec else 24
    step = decision.step("priority")
    began = _BEGAN.search(step.detail) if step is not None else None
    if decision.priority == "early":
        since = f"out of work since {began['when']}, " if began else ""
        return f"early — {since}within the last {months} months; IPS works best when offered early."
    if began:
        return (
            f"routine — out of work since {began['when']}, more than {months} months ago; "
            "IPS is still open to them."
        )
    return "routine — the start of the current spell out of work is not recorded."
