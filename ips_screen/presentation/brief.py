"""The brief: one plain line per reason criterion, what a clinician reads in ten seconds.

The CDS card's detail, the proposal's clinician note and the review page all open with these
lines: for the default ruleset, the pain condition and since when, then the spell out of work
(or "employment status not recorded: please ask" when it was inferred). The words are the
ruleset's (`texts.brief_*` templates); no reason code, flag name or codelist display appears, and
"please confirm" only when the status is unconfirmed. Dates read "2 December 2026".

Built from the decision's typed evidence and the ruleset only: no Patient fields are read here.
"""

from __future__ import annotations

from ips_screen.dates import long_date
from ips_screen.engine.decision import Decision, Step
from ips_screen.kinds.evidence import (
    LatestCategoryEvidence,
    RecordEvidence,
    RecordsEvidence,
    SpellStartEvidence,
)
from ips_screen.kinds.registry import walk_criteria
from ips_screen.presentation.labels import category_text, criterion_label, one_line
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.ruleset.model import Criterion, LatestCategory


def brief_lines(decision: Decision, ruleset: CompiledRuleset) -> list[str]:
    """One line per reason criterion of the proposal that the decision met, in ruleset order."""
    out = []
    for name in ruleset.model.proposal.reason_criteria:
        step = decision.step(name)
        if step is None or step.status != "pass":
            continue
        rule = inclusion_rule(ruleset, name)
        if isinstance(rule, LatestCategory) and isinstance(step.evidence, LatestCategoryEvidence):
            line = _status_line(decision, step.evidence, rule, ruleset)
        else:
            line = _records_line(step, ruleset)
        if line:
            out.append(_capital(line))
    return out


def supporting_line(
    dates: list[object], ruleset: CompiledRuleset, title: str | None = None
) -> str | None:
    """The card's line for the supporting records ("Fit notes in the last 12 months: 2, latest
    3 August 2026."); None when there are none. `dates`: one per record (None: undated)."""
    if not dates:
        return None
    texts = ruleset.model.texts
    months = ruleset.model.proposal.supporting_info.within_months or 12
    known = sorted(d for d in dates if d is not None)
    latest = long_date(known[-1]) if known else "undated"  # type: ignore[arg-type]
    return _capital(
        texts.brief_supporting.format(
            title=title or texts.supporting_title,
            months=months,
            count=len(dates),
            date=latest,
        )
    )


# --- helpers -----------------------------------------------------------------------------------


def _capital(line: str) -> str:
    line = " ".join(line.split())
    return line[:1].upper() + line[1:]


def inclusion_rule(ruleset: CompiledRuleset, rule_id: str) -> Criterion | None:
    """The rule `rule_id` among the ruleset's criteria (at any depth), None when there is none."""
    for inclusion in ruleset.model.criteria:
        for rule in walk_criteria(inclusion.rule):
            if rule.id == rule_id:
                return rule
    return None


def _records(step: Step) -> list[RecordEvidence]:
    """The dated records of the parts that held (the step itself when it has no parts)."""
    found: list[RecordEvidence] = []
    stack = [step]
    while stack:
        part = stack.pop()
        held = [p for p in part.parts if p.status == "pass"]
        stack.extend(held)
        if isinstance(part.evidence, RecordsEvidence) and part.evidence.result == "enough":
            found.extend(r for r in part.evidence.records if r.date is not None)
    return found


def _records_line(step: Step, ruleset: CompiledRuleset) -> str:
    records = _records(step)
    label = criterion_label(step.id, ruleset)
    if not records:
        return label
    first = min(records, key=lambda r: (r.date, r.ref))
    assert first.date is not None
    return ruleset.model.texts.brief_records.format(
        label=label, term=one_line(first.display) or label, date=long_date(first.date)
    )


def _spell_start(decision: Decision, ruleset: CompiledRuleset, rule: LatestCategory):
    spec = ruleset.model.priority
    if spec is None or getattr(spec, "latest", None) != rule.id:
        return None
    step = decision.step("priority")
    evidence = step.evidence if step is not None else None
    if isinstance(evidence, SpellStartEvidence) and evidence.start is not None:
        return evidence.start.date
    return None


def _status_line(
    decision: Decision,
    evidence: LatestCategoryEvidence,
    rule: LatestCategory,
    ruleset: CompiledRuleset,
) -> str:
    texts = ruleset.model.texts
    label = criterion_label(rule.id, ruleset)
    status = texts.status_names.get(rule.id) or label.lower()
    categories = sorted({r.category for r in evidence.latest})
    category = " or ".join(category_text(rule.codelist, c, ruleset) for c in categories)
    day = long_date(evidence.latest_date) if evidence.latest_date else ""
    unconfirmed = any(f in decision.flags for f in (rule.stale_flag, rule.otherwise.flag) if f)
    if evidence.result == "conflict":
        return texts.brief_status_conflict.format(status=status, date=day)
    if unconfirmed or not evidence.recent:
        if evidence.latest_date is None:
            return texts.brief_status_missing.format(status=status)
        return texts.brief_status_old.format(status=status, date=day, category=category)
    start = _spell_start(decision, ruleset, rule)
    if start is not None:
        return texts.brief_spell.format(label=label, category=category, date=long_date(start))
    return texts.brief_status.format(label=label, category=category, date=day)
