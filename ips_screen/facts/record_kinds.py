"""Answers kept per kind of record: records of one type with the same codings (codes, values and
components) get the same answer to any question about their codes, such as which codelists they
are coded in (`kinds.unread`) or which windows their dates are compared with (`engine.horizon`).
Codings are shared objects (`facts.model`), so a kind's key is cheap to hash and compare."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

from ips_screen.facts.model import Coding, Record

KINDS_KEPT = 50_000  # kinds of record whose answers are kept (then forgotten, and asked again)
T = TypeVar("T")


class Matcher(Protocol):
    """What is asked of a codelist (`ruleset.codelists.Codelist`): the category of the first
    of the codings in it (None: none is)."""

    def first_match(self, codings: Iterable[Coding]) -> str | None: ...


_UNKNOWN = object()


def all_codings(record: Record) -> tuple[Coding, ...]:
    """Every coding of the record: its codes, its values, and each component's codes and
    values."""
    return (
        *record.codes,
        *record.values,
        *(coding for codes, values in record.components for coding in (*codes, *values)),
    )


class PerRecordKind(Generic[T]):
    """`answer(record)`, asked once for each kind of record (up to KINDS_KEPT at a time)."""

    def __init__(self, answer: Callable[[Record], T]) -> None:
        self.answer = answer
        self.known: dict[tuple, T] = {}

    def __call__(self, record: Record) -> T:
        key = (record.resource_type, record.codes, record.values, record.components)
        known = self.known
        found = known.get(key, _UNKNOWN)  # one lookup: another thread may clear the dict
        if found is _UNKNOWN:
            if len(known) >= KINDS_KEPT:
                known.clear()
            found = known[key] = self.answer(record)
        return found  # type: ignore[return-value]


def coded_in(
    codelists: Mapping[str, Matcher], names: Iterable[str]
) -> PerRecordKind[frozenset[str]]:
    """The names (of `names`) of the codelists each record has a coding in (`all_codings`, as
    `first_match` matches them), asked once for each kind of record."""
    wanted = sorted(set(names))

    def answer(record: Record) -> frozenset[str]:
        codings = all_codings(record)
        return frozenset(n for n in wanted if codelists[n].first_match(codings) is not None)

    return PerRecordKind(answer)
