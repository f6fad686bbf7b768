"""Kinds `any-of` and `all-of`: combine other criteria.

`any-of` holds when one holds and keeps the references of those that hold; `all-of` holds when
all hold and keeps every reference. Either is "cannot tell" when it does not hold and a part
cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ips_screen.kinds.base import KindModel, KindSpec
from ips_screen.kinds.context import Child, Context, Finding, constant, is_constant
from ips_screen.kinds.evidence import CombinedEvidence

if TYPE_CHECKING:
    from ips_screen.kinds.base import Criterion


class AnyOf(KindModel):
    kind: Literal["any-of"]
    criteria: list[Criterion] = Field(min_length=1)


class AllOf(KindModel):
    kind: Literal["all-of"]
    criteria: list[Criterion] = Field(min_length=1)


def any_of(rule: AnyOf, ctx: Context) -> Finding:
    return _combine(rule, ctx, any)


def all_of(rule: AllOf, ctx: Context) -> Finding:
    return _combine(rule, ctx, all)


def _combine(rule: AnyOf | AllOf, ctx: Context, how: Callable) -> Finding:
    findings = [ctx.evaluate(child) for child in rule.criteria]
    if all(is_constant(f) for f in findings):  # then so is this one
        return constant(rule, lambda: _combined(rule, findings, how))
    return _combined(rule, findings, how)


def _combined(rule: AnyOf | AllOf, findings: list[Finding], how: Callable) -> Finding:
    parts = tuple(Child(c.id, c.kind, f) for c, f in zip(rule.criteria, findings, strict=True))
    matched = how(f.matched is True for f in findings)
    if not matched and any(f.matched is None for f in findings):
        result: bool | None = None
    else:
        result = matched
    use = [f for f in findings if f.matched] if rule.kind == "any-of" else findings
    refs = tuple(dict.fromkeys(ref for f in use for ref in f.refs))
    held = tuple(p.id for p in parts if p.finding.matched)
    flags = tuple(dict.fromkeys(flag for f in use for flag in f.flags))
    return Finding(result, refs, CombinedEvidence(held, len(parts)), parts, flags=flags)


def _children(rule: AnyOf | AllOf) -> tuple:
    return tuple(rule.criteria)


def _reads_nothing(rule: AnyOf | AllOf) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (), ()  # only its parts read the patient


SPECS = (
    KindSpec(
        "any-of",
        AnyOf,
        any_of,
        children=_children,
        codelists=lambda rule: (),
        reads=_reads_nothing,
    ),
    KindSpec(
        "all-of",
        AllOf,
        all_of,
        children=_children,
        codelists=lambda rule: (),
        reads=_reads_nothing,
    ),
)
