"""Evaluate one patient: exclusions, then criteria, then priority and the proposal's links.

`evaluate` is a pure function of (ruleset, facts, T): no I/O, no clock, no global state, so it
can run per partition anywhere and gives the same answer for the same input.
"""

from __future__ import annotations

from datetime import date

from ips_screen.engine.criteria import (
    Context,
    employment_evidence,
    evaluate_rule,
    select_records,
)
from ips_screen.engine.decision import Decision, Links, Step, split_reasons
from ips_screen.engine.findings import to_step
from ips_screen.facts.model import PatientFacts
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.ruleset.model import Criterion, LatestCategory, Priority, Records


def _find_rule(ruleset: CompiledRuleset, rule_id: str) -> Criterion | None:
    from ips_screen.ruleset.loader import walk_criteria

    for top in [
        *(e.rule for e in ruleset.model.exclusions),
        *(c.rule for c in ruleset.model.criteria),
    ]:
        for rule in walk_criteria(top):
            if rule.id == rule_id:
                return rule
    return None


def _priority(spec: Priority, ruleset: CompiledRuleset, ctx: Context) -> tuple[str, Step]:
    """`early` when the current spell out of work began within `early_within_months`."""
    rule = _find_rule(ruleset, spec.employment)
    assert isinstance(rule, LatestCategory)
    evidence = [e for e in employment_evidence(rule, ctx) if e.date is not None]
    breaks = [e.date for e in evidence if e.klass in spec.break_classes]
    last_break = max(breaks) if breaks else date.min
    starts = [(e.date, e.ref) for e in evidence if e.klass in spec.out_classes]
    starts += [(r.date, r.ref) for r, _ in _fit_notes(spec.fit_notes, ctx) if r.date is not None]
    starts = [s for s in starts if s[0] > last_break]
    if not starts:
        return "routine", Step("priority", "spell-start", "unknown", (), "no dated start of spell")
    start_day, start_ref = min(starts)
    early = start_day >= ctx.window_start(spec.early_within_months)
    level = "early" if early else "routine"
    detail = (
        f"current spell out of work began {start_day.isoformat()} ({start_ref}): {level}"
        f" (early when within {spec.early_within_months} months)"
    )
    return level, Step("priority", "spell-start", "pass", (start_ref,), detail)


def _fit_notes(spec: Records, ctx: Context):
    chosen = select_records(spec, ctx)
    if spec.categories is not None:
        chosen = [(r, c) for r, c in chosen if c in spec.categories]
    if spec.within_months is not None:
        start = ctx.window_start(spec.within_months)
        chosen = [(r, c) for r, c in chosen if r.date is not None and r.date >= start]
    return chosen


def evaluate(ruleset: CompiledRuleset, facts: PatientFacts, as_of: date) -> Decision:
    """The decision for one patient as of T."""
    model = ruleset.model
    visible = tuple(r for r in facts.records if r.date is None or r.date <= as_of)
    ctx = Context(facts=facts, t=as_of, codelists=ruleset.codelists, records=visible)

    trace: list[Step] = []
    excluded: list[str] = []
    unknown: list[str] = []
    for exclusion in model.exclusions:
        finding = evaluate_rule(exclusion.rule, ctx)
        step = to_step(exclusion.rule, finding, inclusion=False, reason=exclusion.reason)
        trace.append(step)
        if step.status == "fail":
            excluded.append(exclusion.reason)
        elif step.status == "unknown" and step.reason:
            unknown.append(step.reason)

    failing: list[str] = []
    flags: list[str] = []
    steps_by_id: dict[str, Step] = {}
    for inclusion in model.criteria:
        finding = evaluate_rule(inclusion.rule, ctx)
        step = to_step(inclusion.rule, finding, inclusion=True, reason=inclusion.fail_reason)
        trace.append(step)
        steps_by_id[step.id] = step
        if step.status == "pass":
            flags.extend(finding.flags)
        else:
            failing.append(step.reason or inclusion.fail_reason or step.id)

    quality = _quality(ruleset, ctx, steps_by_id)
    ruleset_tag = f"{model.id}@{model.version}"
    common = {
        "patient": facts.ref,
        "trace": tuple(trace),
        "as_of": as_of.isoformat(),
        "ruleset": ruleset_tag,
        "quality": quality,
    }
    if excluded:
        return Decision(
            outcome="excluded", reasons=tuple(excluded), flags=(), priority=None, **common
        )
    if unknown or failing:
        reasons = tuple(dict.fromkeys([*unknown, *failing]))
        return Decision(outcome="not-eligible", reasons=reasons, flags=(), priority=None, **common)

    priority = None
    if model.priority:
        priority, priority_step = _priority(model.priority, ruleset, ctx)
        common["trace"] = (*common["trace"], priority_step)
    proposal = model.proposal
    reason_refs = tuple(
        dict.fromkeys(ref for name in proposal.reason_criteria for ref in steps_by_id[name].refs)
    )
    supporting = tuple(dict.fromkeys(r.ref for r, _ in _fit_notes(proposal.supporting_info, ctx)))
    reason_refs, supporting = split_reasons(reason_refs, supporting)
    pain = tuple(
        ref for ref in steps_by_id[proposal.pain_criterion].refs if ref.startswith("Condition/")
    )
    owner = facts.general_practitioners[0] if facts.general_practitioners else None
    links = Links(reasons=reason_refs, supporting=supporting, pain=pain, owner=owner)
    return Decision(
        outcome="propose",
        reasons=(),
        flags=tuple(dict.fromkeys(flags)),
        priority=priority,
        links=links,
        **common,
    )


def _quality(ruleset: CompiledRuleset, ctx: Context, steps: dict[str, Step]) -> tuple[str, ...]:
    """Data-quality notes: chronic pain with no employment status; undated status records."""
    notes = []
    model = ruleset.model
    if model.priority is None:
        return ()
    rule = _find_rule(ruleset, model.priority.employment)
    if not isinstance(rule, LatestCategory):
        return ()
    evidence = employment_evidence(rule, ctx)
    pain = steps.get(model.proposal.pain_criterion)
    if pain is not None and pain.status == "pass" and not evidence:
        notes.append("chronic-pain-no-employment-status")
    if any(e.date is None for e in evidence):
        notes.append("undated-employment-status")
    return tuple(notes)
