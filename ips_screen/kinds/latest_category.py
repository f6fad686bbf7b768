"""Kind `latest-category`: the latest dated evidence as of T, mapped to classes that pass or fail.

Evidence comes from several sources (a code, an answer to a question, a panel component), each
category of the codelist maps to a class (`skip` ignores it). The latest day's evidence decides
when it is recent and has one class; otherwise the `otherwise` criterion decides, with its flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ips_screen.dates import MAX_MONTHS
from ips_screen.kinds.base import Id, KindModel, KindSpec, Strict
from ips_screen.kinds.context import CodeMatcher, Context, Finding, constant, is_constant
from ips_screen.kinds.evidence import LatestCategoryEvidence, RecordEvidence
from ips_screen.kinds.records import active_at

if TYPE_CHECKING:
    from ips_screen.kinds.base import Criterion


class EvidenceSource(Strict):
    """Where categorised evidence comes from."""

    resource_types: list[Literal["Condition", "Observation"]]
    match: Literal["code", "value", "component"]
    question_codelist: str | None = Field(
        None, description="for value/component: the codes of the question that is answered"
    )
    active_at_as_of: bool = False

    @model_validator(mode="after")
    def _question(self) -> EvidenceSource:
        if self.match in ("value", "component") and not self.question_codelist:
            raise ValueError(f"match: {self.match} needs question_codelist")
        return self


class Otherwise(Strict):
    criterion: Criterion | None = Field(
        None, description="the fallback when no recent evidence decides (none: the rule fails)"
    )
    flag: Id | None = None
    fail_reason: Id


class LatestCategory(KindModel):
    kind: Literal["latest-category"]
    codelist: str
    sources: list[EvidenceSource] = Field(min_length=1)
    classes: dict[str, str] = Field(
        description="codelist category -> class; class 'skip' ignores the evidence"
    )
    pass_classes: list[str] = Field(min_length=1)
    fail_reasons: dict[str, Id] = Field(default_factory=dict, description="class -> reason")
    recent_months: int = Field(24, ge=0, le=MAX_MONTHS)
    stale_flag: Id | None = None
    otherwise: Otherwise

    @model_validator(mode="after")
    def _classes(self) -> LatestCategory:
        known = set(self.classes.values()) - {"skip"}
        for name in [*self.pass_classes, *self.fail_reasons]:
            if name not in known:
                raise ValueError(f"class {name!r} is not one of the classes {sorted(known)}")
        return self


@dataclass(frozen=True, slots=True)
class Classed:
    """One dated piece of categorised evidence with its class."""

    date: date | None
    category: str
    klass: str
    ref: str
    display: str = ""

    def as_evidence(self) -> RecordEvidence:
        return RecordEvidence(self.ref, self.date, self.category, self.display)


def category_evidence(rule: LatestCategory, ctx: Context) -> list[Classed]:
    """All classed evidence for a latest-category rule (cached per context)."""
    key = ("evidence", rule.id)
    if key in ctx.cache:
        return ctx.cache[key]
    codelist = ctx.codelists[rule.codelist]
    out: list[Classed] = []
    for source in rule.sources:
        out.extend(_from_source(source, codelist, rule, ctx))
    out.sort(key=lambda e: (e.date or date.min, e.ref, e.category))
    ctx.cache[key] = out
    return out


def _from_source(
    source: EvidenceSource, codelist: CodeMatcher, rule: LatestCategory, ctx: Context
) -> list[Classed]:
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
                out.append(Classed(r.date, category, klass, r.ref, r.display or ""))
    return out


def latest_category(rule: LatestCategory, ctx: Context) -> Finding:
    evidence = category_evidence(rule, ctx)
    dated = [e for e in evidence if e.date is not None]
    undated = len(evidence) - len(dated)

    def found(day, latest, klass, result, recent) -> LatestCategoryEvidence:
        records = tuple(e.as_evidence() for e in latest)
        return LatestCategoryEvidence(
            day, records, klass, result, recent, rule.recent_months, undated
        )

    if dated:
        latest_day = max(e.date for e in dated)
        latest = [e for e in dated if e.date == latest_day]
        classes = sorted({e.klass for e in latest})
        refs = tuple(dict.fromkeys(e.ref for e in latest))
        recent = latest_day >= ctx.window_start(rule.recent_months)
        if len(classes) == 1:
            klass = classes[0]
            if klass in rule.pass_classes:
                flags = () if recent or not rule.stale_flag else (rule.stale_flag,)
                said = found(latest_day, latest, klass, "pass", recent)
                return Finding(True, refs, said, flags=flags)
            if klass in rule.fail_reasons and recent:
                said = found(latest_day, latest, klass, "fail", recent)
                return Finding(False, refs, said, reason=rule.fail_reasons[klass])
            said = found(latest_day, latest, klass, "stale", recent)
        else:
            said = found(latest_day, latest, None, "conflict", recent)
    else:
        said = found(None, (), None, "none", False)
    fallback = rule.otherwise
    if fallback.criterion is None:
        finding = Finding(False, (), said, reason=fallback.fail_reason)
        return finding if evidence else constant(rule, lambda: finding)
    child = ctx.child(fallback.criterion)
    step = child.finding
    if step.matched:
        flags = (fallback.flag,) if fallback.flag else ()
        finding = Finding(True, step.refs, said, (child,), flags=flags)
    else:
        finding = Finding(False, step.refs, said, (child,), reason=fallback.fail_reason)
    if evidence or not is_constant(step):
        return finding
    return constant(rule, lambda: finding)  # no evidence, and a fallback the same for all


def _check(rule: LatestCategory, codelists) -> str | None:
    unmapped = sorted(codelists[rule.codelist].categories - set(rule.classes))
    if unmapped:
        return f"categories {unmapped} of codelist {rule.codelist!r} have no class"
    return None


def _codelists(rule: LatestCategory) -> tuple[str, ...]:
    questions = (s.question_codelist for s in rule.sources if s.question_codelist)
    return (rule.codelist, *questions)


SPECS = (
    KindSpec(
        "latest-category",
        LatestCategory,
        latest_category,
        children=lambda rule: (rule.otherwise.criterion,) if rule.otherwise.criterion else (),
        codelists=_codelists,
        windows=lambda rule: (rule.recent_months,),
        window_types=lambda rule: {t for source in rule.sources for t in source.resource_types},
        window_coded=True,  # evidence: a code, value or component's value in its codelist
        check=_check,
        reads=lambda rule: (
            {t for source in rule.sources for t in source.resource_types},
            (rule.codelist,),  # no evidence without a coding in it (and the fallback's reads)
        ),
        helpers=(Otherwise,),
    ),
)
