"""The criterion kinds, found once: every module of this package that declares `SPECS`.

From the kinds' declarations this module builds the `Criterion` union the ruleset model uses
(discriminated by `kind`), evaluates a criterion (`evaluate_rule`), walks nested criteria
(`walk_criteria`) and lists the codelists and "N months" windows a criterion uses. Adding a kind
is adding one module here (see README.md, "Adding a criterion kind").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Annotated, Any, Union

from pydantic import Field

import ips_screen.kinds as _package
from ips_screen.kinds.base import BirthKey, KindModel, KindSpec
from ips_screen.kinds.context import Context, Finding

_NOT_KINDS = frozenset({"base", "context", "evidence", "registry", "unread"})


def _discover() -> dict[str, KindSpec]:
    specs: dict[str, KindSpec] = {}
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        if info.name in _NOT_KINDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        for spec in getattr(module, "SPECS", ()):
            if spec.name in specs:
                raise RuntimeError(f"criterion kind {spec.name!r} is declared twice")
            specs[spec.name] = spec
    return specs


KINDS: dict[str, KindSpec] = _discover()
_BY_MODEL: dict[type, KindSpec] = {spec.model: spec for spec in KINDS.values()}

Criterion = Annotated[
    Union[tuple(spec.model for spec in KINDS.values())],  # noqa: UP007 (built at run time)
    Field(discriminator="kind"),
]

for _spec in KINDS.values():
    for _model in (*_spec.helpers, _spec.model):
        _model.model_rebuild(force=True, _types_namespace={"Criterion": Criterion})


def spec_of(rule: KindModel) -> KindSpec:
    return _BY_MODEL[type(rule)]


def evaluate_rule(rule: Any, ctx: Context) -> Finding:
    """The finding of one criterion for the patient in `ctx`."""
    return _BY_MODEL[type(rule)].evaluate(rule, ctx)


def walk_criteria(criterion: Any) -> Iterator[Any]:
    """The criterion and every criterion nested in it."""
    yield criterion
    for child in spec_of(criterion).children(criterion):
        yield from walk_criteria(child)


def codelists_of(criterion: Any) -> tuple[str, ...]:
    """The codelists one criterion (not its children) reads."""
    return tuple(spec_of(criterion).codelists(criterion))


def check_of(criterion: Any, codelists: Any) -> str | None:
    """What is wrong with one criterion given the ruleset's codelists (None: nothing)."""
    return spec_of(criterion).check(criterion, codelists)


def windows_of(criterion: Any) -> tuple[int, ...]:
    """The "N months" windows one criterion (not its children) compares dates with."""
    return tuple(spec_of(criterion).windows(criterion))


def birth_key_of(criterion: Any) -> BirthKey | None:
    """What one criterion (not its children) reads of a birth date (None: nothing)."""
    return spec_of(criterion).birth_key


def window_codelists_of(criterion: Any) -> frozenset[str] | None:
    """The codelists one criterion (not its children) reads the records it compares with its
    windows by: each such record has a coding in one of them (None: any record of the types)."""
    spec = spec_of(criterion)
    return frozenset(spec.codelists(criterion)) if spec.window_coded else None


def window_types_of(criterion: Any) -> frozenset[str] | None:
    """The record types whose dates one criterion (not its children) compares with its windows
    (None: any type)."""
    types = spec_of(criterion).window_types(criterion)
    return None if types is None else frozenset(types)


def reads_of(criterion: Any) -> tuple[frozenset[str], frozenset[str]] | None:
    """The record types and codelists a criterion and every criterion nested in it read, when
    they read the patient only through such records (`KindSpec.reads`); None otherwise."""
    types: set[str] = set()
    names: set[str] = set()
    for rule in walk_criteria(criterion):
        reads = spec_of(rule).reads
        if reads is None:
            return None
        more_types, more_names = reads(rule)
        types.update(more_types)
        names.update(more_names)
    return frozenset(types), frozenset(names)
