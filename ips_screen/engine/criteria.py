"""The criterion kinds: each is a predicate over one patient's facts at the as-of date T.

A kind returns a `Finding`: whether it matched (True / False / None for "cannot tell"), the
records that decided it, and a plain-words detail. `evaluate.py` turns findings into trace steps:
an exclusion applies when its rule matches; a criterion passes when its rule matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from ips_screen.dates import add_years, age_on, uk_state_pension_date
from ips_screen.engine.findings import Context, Finding, to_step
from ips_screen.engine.referrals import referral_declined, referral_open
from ips_screen.facts.model import Record
from ips_screen.ruleset.codelists import Codelist
from ips_screen.ruleset.model import (
    AllOf,
    AnyOf,
    Criterion,
    Deceased,
    EvidenceSource,
    LatestCategory,
    OutsideAgeRange,
    Records,
    ReferralDeclined,
    ReferralOpen,
)

__all__ = ["Context", "Finding", "evaluate_rule"]

ACTIVE = frozenset({"active", "recurrence", "relapse"})
NOT_ACTIVE = frozenset({"inactive", "remission", "resolved"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """One dated piece of categorised evidence (latest-category)."""

    date: date | None
    category: str
    klass: str
    ref: str


def active_at(record: Record, t: date) -> bool:
    """Condition active at T (default-ruleset.md, "Active at T")."""
    status = record.clinical_status
    if status in ACTIVE:
        return True
    if status in NOT_ACTIVE:
        return record.abatement is not None and record.abatement > t
    if status is None:
        if record.abatement is not None:
            return record.abatement > t
        return not record.abatement_undated
    return False


def _fmt(record: Record) -> str:
    when = record.date.isoformat() if record.date else "undated"
    return f"{record.display or record.ref} ({record.ref}, {when})"


def _coded(record: Record, codelist: Codelist, match: str) -> str | None:
    """Category ("" if none) of the record in the codelist by code and/or value, else None."""
    if match in ("code", "code-or-value"):
        found = codelist.first_match(record.codes)
        if found is not None:
            return found
    if match in ("value", "code-or-value"):
        return codelist.first_match(record.values)
    return None


# --- kinds -----------------------------------------------------------------------------------


def deceased(rule: Deceased, ctx: Context) -> Finding:
    facts = ctx.facts
    if facts.deceased:
        return Finding(True, (facts.ref,), "recorded as deceased")
    if facts.deceased_date and facts.deceased_date <= ctx.t:
        return Finding(True, (facts.ref,), "date of death on or before the as-of date")
    return Finding(False, (facts.ref,), "not recorded as deceased")


def outside_age_range(rule: OutsideAgeRange, ctx: Context) -> Finding:
    birth, t, ref = ctx.facts.birth_date, ctx.t, ctx.facts.ref
    if birth is None:
        return Finding(None, (ref,), "no birth date recorded", reason=rule.missing_reason)
    age = age_on(birth, t)
    if t < add_years(birth, rule.min_age):
        return Finding(True, (ref,), f"aged {age}, under {rule.min_age}")
    if rule.max_age is not None and t >= add_years(birth, rule.max_age):
        return Finding(True, (ref,), f"aged {age}, {rule.max_age} or over")
    if (
        rule.max_age is None
        and rule.state_pension_age == "uk"
        and t >= uk_state_pension_date(birth)
    ):
        return Finding(True, (ref,), f"aged {age}, at or over UK State Pension age")
    return Finding(False, (ref,), f"aged {age}, of working age")


def select_records(rule: Records, ctx: Context) -> list[tuple[Record, str]]:
    """Records of the rule's types coded in its codelist, with their category."""
    codelist = ctx.codelists[rule.codelist]
    types = set(rule.resource_types)
    out = []
    for record in ctx.records:
        if record.resource_type in types:
            category = _coded(record, codelist, rule.match)
            if category is not None:
                out.append((record, category))
    return out


def records(rule: Records, ctx: Context) -> Finding:
    coded = select_records(rule, ctx)
    chosen = coded
    notes = []
    if rule.active_at_as_of:
        chosen = [
            (r, c) for r, c in chosen if r.resource_type == "Condition" and active_at(r, ctx.t)
        ]
        notes.append("active")
    if rule.within_months is not None:
        start = ctx.window_start(rule.within_months)
        chosen = [(r, c) for r, c in chosen if r.date is not None and r.date >= start]
        notes.append(f"in the last {rule.within_months} months")
    if rule.categories is not None:
        wanted = set(rule.categories)
        chosen = [(r, c) for r, c in chosen if c in wanted]
        notes.append(" or ".join(rule.categories))
    refs = tuple(r.ref for r, _ in chosen)
    if rule.distinct == "day-and-category":
        count = len(
            {(r.date, c) for r, c in chosen if r.date} | {r.ref for r, c in chosen if not r.date}
        )
    else:
        count = len(chosen)
    what = f"{count} record(s) in {rule.codelist}" + (f" ({', '.join(notes)})" if notes else "")
    if count < rule.min_count:
        return Finding(False, refs, f"{what}; needs {rule.min_count}")
    if rule.earliest_at_least_months is not None:
        dated = [r for r, _ in coded if r.date is not None]
        if not dated:
            return Finding(False, refs, f"{what}, but none dated: cannot show persistence")
        earliest = min(dated, key=lambda r: (r.date, r.ref))
        cutoff = ctx.window_start(rule.earliest_at_least_months)
        first = f"first recorded {earliest.date.isoformat()}"
        if earliest.date > cutoff:
            return Finding(
                False, refs, f"{what}; {first}, less than {rule.earliest_at_least_months} months"
            )
        refs = (*refs, earliest.ref) if earliest.ref not in refs else refs
        what = f"{what}; {first}"
    listed = "; ".join(_fmt(r) for r, _ in chosen[:5])
    return Finding(True, refs, f"{what}: {listed}" if listed else what)


def employment_evidence(rule: LatestCategory, ctx: Context) -> list[Evidence]:
    """All categorised evidence for a latest-category rule (cached per context)."""
    key = ("evidence", rule.id)
    if key in ctx.cache:
        return ctx.cache[key]
    codelist = ctx.codelists[rule.codelist]
    out: list[Evidence] = []
    for source in rule.sources:
        out.extend(_from_source(source, codelist, rule, ctx))
    out.sort(key=lambda e: (e.date or date.min, e.ref, e.category))
    ctx.cache[key] = out
    return out


def _from_source(
    source: EvidenceSource, codelist: Codelist, rule: LatestCategory, ctx: Context
) -> list[Evidence]:
    types = set(source.resource_types)
    question = ctx.codelists[source.question_codelist] if source.question_codelist else None
    out = []
    for r in ctx.records:
        if r.resource_type not in types:
            continue
        if source.active_at_as_of and r.resource_type == "Condition" and not active_at(r, ctx.t):
            continue
        categories: list[str] = []
        if source.match == "code":
            found = codelist.first_match(r.codes)
            if found is not None:
                categories.append(found)
        elif source.match == "value":
            if question.first_match(r.codes) is not None:
                found = codelist.first_match(r.values)
                if found is not None:
                    categories.append(found)
        else:  # component
            for codes, values in r.components:
                if question.first_match(codes) is not None:
                    found = codelist.first_match(values)
                    if found is not None:
                        categories.append(found)
        for category in categories:
            klass = rule.classes.get(category, "skip")
            if klass != "skip":
                out.append(Evidence(r.date, category, klass, r.ref))
    return out


def latest_category(rule: LatestCategory, ctx: Context) -> Finding:
    evidence = employment_evidence(rule, ctx)
    dated = [e for e in evidence if e.date is not None]
    undated = len(evidence) - len(dated)
    note = f"; {undated} undated record(s) not used" if undated else ""
    if dated:
        latest_day = max(e.date for e in dated)
        latest = [e for e in dated if e.date == latest_day]
        classes = sorted({e.klass for e in latest})
        refs = tuple(dict.fromkeys(e.ref for e in latest))
        cats = ", ".join(sorted({e.category for e in latest}))
        said = f"latest evidence {latest_day.isoformat()}: {cats} ({', '.join(refs)})"
        recent = latest_day >= ctx.window_start(rule.recent_months)
        if len(classes) == 1:
            klass = classes[0]
            if klass in rule.pass_classes:
                flags = () if recent or not rule.stale_flag else (rule.stale_flag,)
                age = "" if recent else f", older than {rule.recent_months} months"
                return Finding(True, refs, f"{said}{age}{note}", flags=flags)
            if klass in rule.fail_reasons and recent:
                return Finding(False, refs, f"{said}{note}", reason=rule.fail_reasons[klass])
            why = f"{said}, older than {rule.recent_months} months"
        else:
            why = f"conflicting evidence on {latest_day.isoformat()}: {cats} ({', '.join(refs)})"
    else:
        why = "no dated employment status recorded"
    fallback = rule.otherwise
    step = evaluate_rule(fallback.criterion, ctx)
    child = to_step(fallback.criterion, step, inclusion=True)
    if step.matched:
        flags = (fallback.flag,) if fallback.flag else ()
        return Finding(True, step.refs, f"{why}{note}; {step.detail}", (child,), flags=flags)
    return Finding(
        False, step.refs, f"{why}{note}; {step.detail}", (child,), reason=fallback.fail_reason
    )


def any_of(rule: AnyOf, ctx: Context) -> Finding:
    return _combine(rule, ctx, any)


def all_of(rule: AllOf, ctx: Context) -> Finding:
    return _combine(rule, ctx, all)


def _combine(rule: AnyOf | AllOf, ctx: Context, how: Callable) -> Finding:
    findings = [(child, evaluate_rule(child, ctx)) for child in rule.criteria]
    parts = tuple(to_step(child, f, inclusion=True) for child, f in findings)
    matched = how(f.matched is True for _, f in findings)
    if not matched and any(f.matched is None for _, f in findings):
        result: bool | None = None
    else:
        result = matched
    use = (
        [f for _, f in findings if f.matched] if rule.kind == "any-of" else [f for _, f in findings]
    )
    refs = tuple(dict.fromkeys(ref for f in use for ref in f.refs))
    held = [child.id for child, f in findings if f.matched]
    detail = f"{len(held)} of {len(findings)} held" + (f": {', '.join(held)}" if held else "")
    flags = tuple(dict.fromkeys(flag for f in use for flag in f.flags))
    return Finding(result, refs, detail, parts, flags=flags)


KINDS: dict[type, Callable[[Criterion, Context], Finding]] = {
    Deceased: deceased,
    OutsideAgeRange: outside_age_range,
    Records: records,
    ReferralOpen: referral_open,
    ReferralDeclined: referral_declined,
    LatestCategory: latest_category,
    AnyOf: any_of,
    AllOf: all_of,
}


def evaluate_rule(rule: Criterion, ctx: Context) -> Finding:
    return KINDS[type(rule)](rule, ctx)
