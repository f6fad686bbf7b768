"""Evaluate one patient: exclusions, then criteria, then priority and the proposal's links.

`evaluate` is a pure function of (ruleset, facts, T): no I/O, no clock, no global state, so it
can run per partition anywhere and gives the same answer for the same input.
"""

from __future__ import annotations

from datetime import date

from ips_screen.engine.decision import Decision, Links, Step, split_reasons
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.context import CONSTANT_MAX, Child, Context, Finding, afresh, is_constant
from ips_screen.kinds.evidence import RecordEvidence, SpellStartEvidence
from ips_screen.kinds.latest_category import category_evidence
from ips_screen.kinds.records import in_window
from ips_screen.kinds.registry import evaluate_rule
from ips_screen.kinds.unread import Unread
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.ruleset.model import Criterion, LatestCategory, Priority

# (id of a constant finding, the step's id, kind, inclusion, reason) -> its step; the finding
# is kept by `kinds.context` for the life of the process, and so is the step (`is_constant_step`).
_STEPS: dict[tuple, Step] = {}
_STEP_IDS: dict[int, Step] = {}


def to_step(
    rule_id: str, kind: str, finding: Finding, *, inclusion: bool, reason: str | None = None
) -> Step:
    """A finding as a trace step; for an exclusion, a match means the patient is stopped.
    Nested findings become nested steps (as inclusions). A constant finding's step is made once
    (`kinds.context.constant`)."""
    if not is_constant(finding):
        return _step(rule_id, kind, finding, inclusion, reason)
    key = (id(finding), rule_id, kind, inclusion, reason)
    step = _STEPS.get(key)
    if step is None:
        step = _step(rule_id, kind, finding, inclusion, reason)
        if len(_STEPS) < CONSTANT_MAX:
            step = _STEPS.setdefault(key, step)  # another thread's, if it came first
            _STEP_IDS[id(step)] = step
    return step


def is_constant_step(step: Step) -> bool:
    """Whether `step` is the one step of a constant finding (the same for every patient), so
    that what is derived from it alone may be kept with it (decisions.ndjson's line)."""
    return _STEP_IDS.get(id(step)) is step


def _step(rule_id: str, kind: str, finding: Finding, inclusion: bool, reason: str | None) -> Step:
    if finding.matched is None:
        status = "unknown"
    elif inclusion:
        status = "pass" if finding.matched else "fail"
    else:
        status = "fail" if finding.matched else "pass"
    stop_reason = None
    if status == "fail":
        stop_reason = reason if not inclusion else (finding.reason or reason)
    elif status == "unknown":
        stop_reason = finding.reason
    return Step(
        id=rule_id,
        kind=kind,
        status=status,
        refs=finding.refs,
        evidence=finding.evidence,
        parts=tuple(_child_step(child) for child in finding.parts),
        reason=stop_reason,
    )


def _child_step(child: Child) -> Step:
    return to_step(child.id, child.kind, child.finding, inclusion=True)


def _find_rule(ruleset: CompiledRuleset, rule_id: str) -> Criterion | None:
    return ruleset.criteria_by_id.get(rule_id)


def _priority(spec: Priority, ruleset: CompiledRuleset, ctx: Context) -> tuple[str, Step]:
    """`early` when the current spell out of work began within `early_within_months`."""
    rule = _find_rule(ruleset, spec.latest)
    assert isinstance(rule, LatestCategory)
    evidence = [e for e in category_evidence(rule, ctx) if e.date is not None]
    breaks = [e.date for e in evidence if e.klass in spec.break_classes]
    last_break = max(breaks) if breaks else date.min
    starts = [
        (e.date, e.ref, e.category, e.display) for e in evidence if e.klass in spec.out_classes
    ]
    starts += [
        (r.date, r.ref, c, r.display or "")
        for r, c in (in_window(spec.also_starts, ctx) if spec.also_starts else ())
        if r.date is not None
    ]
    starts = [s for s in starts if s[0] > last_break]
    months = spec.early_within_months
    if not starts:
        found = SpellStartEvidence(None, "routine", months)
        return "routine", Step("priority", "spell-start", "unknown", (), found)
    start_day, start_ref, category, display = min(starts)
    early = start_day >= ctx.window_start(months)
    level = "early" if early else "routine"
    start = RecordEvidence(start_ref, start_day, category, display)
    found = SpellStartEvidence(start, level, months)
    return level, Step("priority", "spell-start", "pass", (start_ref,), found)


def evaluate(ruleset: CompiledRuleset, facts: PatientFacts, as_of: date) -> Decision:
    """The decision for one patient as of T."""
    model = ruleset.model
    visible = tuple(r for r in facts.records if r.date is None or r.date <= as_of)
    unread = None if afresh() else _unread(ruleset)
    ctx = Context(
        facts=facts,
        t=as_of,
        codelists=ruleset.codelists,
        records=visible,
        dispatch=evaluate_rule,
        unread=unread,
        coded=unread.coded(visible) if unread is not None else [],
    )

    trace: list[Step] = []
    excluded: list[str] = []
    unknown: list[str] = []
    for exclusion in model.exclusions:
        rule = exclusion.rule
        finding = ctx.evaluate(rule)
        step = to_step(rule.id, rule.kind, finding, inclusion=False, reason=exclusion.reason)
        trace.append(step)
        if step.status == "fail":
            excluded.append(exclusion.reason)
        elif step.status == "unknown" and step.reason:
            unknown.append(step.reason)

    failing: list[str] = []
    flags: list[str] = []
    steps_by_id: dict[str, Step] = {}
    for inclusion in model.criteria:
        rule = inclusion.rule
        finding = ctx.evaluate(rule)
        step = to_step(rule.id, rule.kind, finding, inclusion=True, reason=inclusion.fail_reason)
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
    supporting = tuple(dict.fromkeys(r.ref for r, _ in in_window(proposal.supporting_info, ctx)))
    reason_refs, supporting = split_reasons(reason_refs, supporting)
    addressed = steps_by_id.get(proposal.addresses) if proposal.addresses else None
    addresses = tuple(r for r in addressed.refs if r.startswith("Condition/")) if addressed else ()
    owner = facts.general_practitioners[0] if facts.general_practitioners else None
    links = Links(reasons=reason_refs, supporting=supporting, addresses=addresses, owner=owner)
    return Decision(
        outcome="propose",
        reasons=(),
        flags=tuple(dict.fromkeys(flags)),
        priority=priority,
        links=links,
        **common,
    )


_UNREAD: dict[int, tuple[object, Unread]] = {}  # id of a ruleset's model -> (it, its Unread)


def _unread(ruleset: CompiledRuleset) -> Unread:
    """The ruleset's `Unread` (one a ruleset, kept with its model)."""
    model = ruleset.model
    cached = _UNREAD.get(id(model))
    if cached is None or cached[0] is not model or cached[1].codelists is not ruleset.codelists:
        rules = [e.rule for e in model.exclusions] + [c.rule for c in model.criteria]
        cached = _UNREAD[id(model)] = (model, Unread(rules, ruleset.codelists))
    return cached[1]


def _quality(ruleset: CompiledRuleset, ctx: Context, steps: dict[str, Step]) -> tuple[str, ...]:
    """The data-quality notes the ruleset names (`priority.quality_notes`): the addressed
    criterion passes with no latest-category evidence at all (the default ruleset: chronic pain
    with no employment status); some of that evidence is undated."""
    notes = []
    model = ruleset.model
    if model.priority is None:
        return ()
    named = model.priority.quality_notes
    rule = _find_rule(ruleset, model.priority.latest)
    if not isinstance(rule, LatestCategory) or not named.names():
        return ()
    evidence = category_evidence(rule, ctx)
    addressed = steps.get(model.proposal.addresses) if model.proposal.addresses else None
    if named.missing and addressed is not None and addressed.status == "pass" and not evidence:
        notes.append(named.missing)
    if named.undated and any(e.date is None for e in evidence):
        notes.append(named.undated)
    return tuple(notes)
