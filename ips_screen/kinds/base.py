"""What every criterion kind is built from: the strict model base and the `KindSpec` it registers.

A kind module declares, once, everything the rest of the tool needs to know about the kind:

    model      the pydantic model of its entry in a ruleset file (`kind: <name>`)
    evaluate   (rule, Context) -> Finding: whether it holds for one patient at T, with evidence
    children   the criteria nested in it (combinators, fallbacks)
    codelists  the names of the codelists it reads
    windows    its "N months" windows, which bound how long a decision stays valid (horizon),
               with the record types (and whether only records coded in its codelists) whose
               dates it compares with them
    check      what loading a ruleset checks against the codelists (None: nothing), as a message
    reads      the records its finding depends on, when only records (the patients with none of
               them get one finding, made once: `kinds.context.constant`)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"
Id = Annotated[str, Field(pattern=KEBAB)]
ResourceType = Literal["Condition", "Observation", "Procedure", "DocumentReference"]

if TYPE_CHECKING:
    # A kind that nests criteria annotates them `Criterion` (imported from here when type
    # checking); `registry` resolves the name to the union of every kind's model at run time.
    Criterion = Any


class Strict(BaseModel):
    """A ruleset model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KindModel(Strict):
    """The fields every criterion has: an id unique in the ruleset and an optional description."""

    id: Id
    description: str = ""


# (rule, birth date or None, T) -> what the criterion reads of the birth date (`KindSpec.birth_key`)
BirthKey = Callable[[Any, date | None, date], Hashable]


def _no_children(rule: Any) -> Iterable[Any]:
    return ()


def _own_codelist(rule: Any) -> Iterable[str]:
    name = getattr(rule, "codelist", None)
    return (name,) if name else ()


def _no_windows(rule: Any) -> Iterable[int]:
    return ()


def _any_type(rule: Any) -> Iterable[str] | None:
    return None


def _no_check(rule: Any, codelists: Mapping[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class KindSpec:
    """One criterion kind, as its module registers it (see the module docstring)."""

    name: str
    model: type[KindModel]
    evaluate: Callable[[Any, Any], Any]
    children: Callable[[Any], Iterable[Any]] = _no_children
    codelists: Callable[[Any], Iterable[str]] = _own_codelist
    windows: Callable[[Any], Iterable[int]] = _no_windows
    # the record types whose dates the criterion compares with its windows (None: any type)
    window_types: Callable[[Any], Iterable[str] | None] = _any_type
    # True: every record whose dates the criterion compares with its windows has a coding (code,
    # value, or a component's code or value) in one of its `codelists` (False: any record of
    # the types, e.g. a review Task found by its focus)
    window_coded: bool = False
    check: Callable[[Any, Mapping[str, Any]], str | None] = _no_check
    helpers: tuple[type[BaseModel], ...] = ()  # other models of the kind that name criteria
    # (rule, birth date or None, T) -> all the criterion's finding reads of the patient's birth
    # date: patients with equal keys get the same finding (None: the kind reads no birth date;
    # tests/spec/test_kinds.py checks that no other kind does). Shares decisions between
    # patients with no records (nightly/deciding.py).
    birth_key: BirthKey | None = None
    # (rule) -> (record types, codelists): the finding depends on the patient only through their
    # records of those types with a coding (code, value, or a component's code or value) in one
    # of those codelists; with none, it is the kind's constant finding (`kinds.context.constant`)
    # if its nested criteria's are too (kinds/unread.py then gives it without evaluating).
    # None: the kind reads the patient otherwise (birth date, death) or has no constant finding.
    reads: Callable[[Any], tuple[Iterable[str], Iterable[str]]] | None = None
