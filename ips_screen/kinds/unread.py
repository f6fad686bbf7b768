"""Criteria that read nothing of a patient: their findings without evaluating them.

A criterion whose kind, and every kind nested in it, reads the patient only through records of
some types coded in some codelists (`KindSpec.reads`, `registry.reads_of`) gives every patient
with no such record the same finding (`context.constant`). Once an evaluation has made that
finding, `Unread.kept` gives it (`context.constant_of`) to the next such patient without
evaluating the criterion; most
criteria of most patients are such (no fit note, no palliative care, no referral). Which
codelists a record is coded in (code, value, or a component's code or value, as
`Codelist.first_match` matches them) is asked once for each kind of record (type and codings:
`facts.record_kinds`), as the horizon does.

`Context.evaluate` asks it; `engine.evaluate` gives a Context one unless findings are made afresh
(`context.made_afresh`: tests compare the two ways).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ips_screen.facts.model import Record
from ips_screen.facts.record_kinds import coded_in
from ips_screen.kinds.context import CodeMatcher, Finding, constant_of
from ips_screen.kinds.registry import reads_of, walk_criteria

Coded = list[tuple[str, frozenset[str]]]  # (type, codelists read it is coded in) of a patient


class Unread:
    """A ruleset's criteria (by identity, nested ones too) with the records they read.
    `criteria`: the top-level ones."""

    def __init__(self, criteria: Iterable[Any], codelists: Mapping[str, CodeMatcher]) -> None:
        self.criteria = tuple(criteria)  # kept, so that the ids below stay theirs
        self.codelists = codelists
        self.reads = {id(r): reads_of(r) for top in self.criteria for r in walk_criteria(top)}
        names = {n for reads in self.reads.values() if reads for n in reads[1]}
        self.coded_in = coded_in(codelists, names)  # the codelists read a record is coded in

    def coded(self, records: Iterable[Record]) -> Coded:
        """(type, the codelists read that it is coded in) of each record coded in any."""
        out = []
        coded_in = self.coded_in
        for record in records:
            names = coded_in(record)
            if names:
                out.append((record.resource_type, names))
        return out

    def kept(self, rule: Any, coded: Coded) -> Finding | None:
        """The rule's constant finding (`context.constant_of`), if it reads only records and the
        patient (`coded`) has none it reads; else None (evaluate it)."""
        reads = self.reads.get(id(rule))
        if reads is None:
            return None
        finding = constant_of(rule)
        if finding is None:
            return None
        types, names = reads
        for rtype, in_lists in coded:
            if rtype in types and not names.isdisjoint(in_lists):
                return None
        return finding
