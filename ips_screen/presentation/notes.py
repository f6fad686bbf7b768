"""The proposal's words: the clinician note, the report's one-line reasons, the review Task's
line and the patient's explanation, from a Decision's typed evidence and the ruleset.

The note says why this patient was suggested (the evidence of each reason criterion with its
clinical terms, the latest-category evidence or its fallback, the priority and any flags). Built
only from the trace and the ruleset, which hold no names, birth dates, addresses or NHS numbers:
keep it so (no Patient fields are read here).
"""

from __future__ import annotations

from datetime import date

from ips_screen.dates import long_date
from ips_screen.engine.decision import Decision, Step
from ips_screen.kinds.evidence import (
    LatestCategoryEvidence,
    RecordEvidence,
    RecordsEvidence,
    SpellStartEvidence,
)
from ips_screen.kinds.records import one_record_key
from ips_screen.kinds.registry import walk_criteria
from ips_screen.presentation.brief import brief_lines, inclusion_rule
from ips_screen.presentation.labels import (
    category_text,
    criterion_label,
    one_line,
)
from ips_screen.presentation.trace import LISTED, step_line
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.ruleset.model import LatestCategory, Records


def patient_explanation(ruleset: CompiledRuleset) -> str:
    """The explanation for the patient (ServiceRequest.patientInstruction), from the ruleset."""
    return ruleset.model.proposal.patient_explanation.strip()


def task_description(decision: Decision, ruleset: CompiledRuleset) -> str:
    """One line for the review Task: why, the screen's priority, and what its flags ask."""
    texts = ruleset.model.texts
    line = f"{texts.task_line or ruleset.model.title} ({decision.priority or 'routine'})"
    asks = [texts.flag_actions[flag] for flag in decision.flags if flag in texts.flag_actions]
    return "; ".join([line, *asks])


def clinician_note(decision: Decision, ruleset: CompiledRuleset) -> str:
    """Why this patient was suggested, in plain words (ServiceRequest.note): the brief (one line
    per reason, as the card shows it), the priority, the ruleset's summary, and a last line saying
    which screen ran on records up to which day. The card of a pending proposal shows the first
    block, so keep the brief first and alone in it. No codes: the ruleset and version are in the
    ServiceRequest's extension."""
    model = ruleset.model
    lines = brief_lines(decision, ruleset)
    if model.priority is not None:  # a ruleset without priorities has no priority to explain
        lines += ["", f"Priority: {_priority(decision, ruleset)}"]
    summary = model.proposal.clinician_summary.strip()
    if summary:
        lines.extend(["", " ".join(summary.split())])
    try:
        as_of = long_date(date.fromisoformat(decision.as_of))
    except ValueError:  # a placeholder (proposals.json's templates put the day in later)
        as_of = decision.as_of
    lines.extend(["", f"Screened on records up to {as_of}."])  # the ruleset: the extension
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
        rule = inclusion_rule(ruleset, name)
        label = criterion_label(name, ruleset)
        if isinstance(rule, LatestCategory) and isinstance(step.evidence, LatestCategoryEvidence):
            out.append((label, _employment(step, step.evidence, rule, ruleset)))
        else:
            out.append((label, _evidence(step, ruleset)))
    return out


def _listed(step: Step) -> list[RecordEvidence]:
    """The records a step names in its trace line (a records step that held)."""
    evidence = step.evidence
    if isinstance(evidence, RecordsEvidence) and evidence.result == "enough":
        return list(evidence.records[:LISTED])
    return []


def _when(record: RecordEvidence) -> str:
    return long_date(record.date) if record.date else "undated"


def _terms(listed: list[RecordEvidence]) -> str:
    """'term (date); ...', each once (a coded entry and its document say the same)."""
    return "; ".join(dict.fromkeys(f"{one_line(r.display or r.ref)} ({_when(r)})" for r in listed))


def _evidence(step: Step, ruleset: CompiledRuleset) -> str:
    """The clinical terms of the records that made a criterion pass, with what each shows."""
    held = [p for p in step.parts if p.status == "pass"] if step.parts else [step]
    out = []
    for part in held:
        rule = inclusion_rule(ruleset, part.id)
        why = rule.description if rule is not None and rule.description else ""
        terms = _terms(_listed(part))
        if terms and why:
            out.append(f"{terms} — {why}")
        else:  # no rule words: the records alone, else the criterion's label (never its id)
            out.append(terms or why or criterion_label(part.id, ruleset))
    return "; ".join(out) + "."


def _employment(
    step: Step, evidence: LatestCategoryEvidence, rule: LatestCategory, ruleset: CompiledRuleset
) -> str:
    status = (
        ruleset.model.texts.status_names.get(rule.id) or criterion_label(rule.id, ruleset).lower()
    )
    categories = sorted({r.category for r in evidence.latest})
    cats = ", ".join(category_text(rule.codelist, c, ruleset) for c in categories)
    day = long_date(evidence.latest_date) if evidence.latest_date else ""
    if not step.parts:  # passed on recorded evidence
        if evidence.latest_date is None:
            return f"{step_line(step)}."
        said = f"recorded as {cats} on {day}"
        if not evidence.recent:
            return (
                f"{said}, more than {rule.recent_months} months ago — please confirm and record "
                f"their current {status}."
            )
        return f"{said}."
    if evidence.result == "conflict":
        why = f"conflicting {status} records on the same day"
    elif evidence.latest_date is not None:
        why = (
            f"the latest recorded {status} ({cats}, {day}) "
            f"is more than {rule.recent_months} months old"
        )
    else:
        why = f"no recorded {status}"
    count, months, listed = _fit_notes(step, rule)
    text = (
        f"{why}: {count} fit notes in the last {months} months, at least one not fit for work — "
        f"please confirm and record their {status}."
    )
    return f"{text} Fit notes: {_terms(listed)}." if listed else text


def _fit_notes(step: Step, rule: LatestCategory) -> tuple[int, int, list[RecordEvidence]]:
    """Fit notes as the fallback's counting rule counts them, its window, the records listed."""
    fallback = rule.otherwise.criterion
    records = [r for r in walk_criteria(fallback) if isinstance(r, Records)] if fallback else []
    counting = max(records, key=lambda r: r.min_count) if records else None
    months = counting.within_months if counting and counting.within_months is not None else 12
    count, listed = len(step.refs), []
    stack = list(step.parts)
    while stack:
        part = stack.pop(0)
        stack.extend(part.parts)
        if (
            isinstance(part.evidence, RecordsEvidence)
            and counting is not None
            and part.id == counting.id
        ):
            count = part.evidence.count
        listed.extend(_listed(part))
    listed = sorted(
        set(listed),
        key=lambda r: (r.date or date.max, r.ref.startswith("DocumentReference/"), r.ref),
    )
    if counting is not None and counting.distinct == "day-and-category":  # one per fit note
        once = {}
        for r in listed:
            once.setdefault(one_record_key(r.date, r.category, r.ref), r)
        listed = sorted(once.values(), key=lambda r: (r.date or date.max, r.ref))
    return count, months, listed


def _priority(decision: Decision, ruleset: CompiledRuleset) -> str:
    spec, texts = ruleset.model.priority, ruleset.model.texts
    months = spec.early_within_months if spec else 24
    step = decision.step("priority")
    evidence = step.evidence if step is not None else None
    start = evidence.start if isinstance(evidence, SpellStartEvidence) else None
    began = long_date(start.date) if start is not None and start.date else None
    if decision.priority == "early":
        since = f"out of work since {began}, " if began else ""
        note = f". {texts.early_note}" if texts.early_note else "."
        return f"early ({since}within the last {months} months){note}"
    if began:
        note = f". {texts.routine_note}" if texts.routine_note else "."
        return f"routine (out of work since {began}, more than {months} months ago){note}"
    return "routine (the start of the current spell out of work is not recorded)."
