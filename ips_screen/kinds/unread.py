"""Criteria that read nothing of a patient: their findings without evaluating them.

A criterion whose kind, and every kind nested in it, reads the patient only through records of
some types coded in some codelists (`KindSpec.reads`, `registry.reads_of`) gives every patient
with no such record the same finding (`context.constant`). Once an evaluation has made that
finding, `Unread.kept` gives it to the next such patient without evaluating the criterion; most
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
from ips_screen.facts.record_kinds import PerRecordKind, all_codings
from ips_screen.kinds.context import CodeMatcher, Finding, is_constant
from ips_screen.kinds.registry import reads_of, walk_criteria

Coded = list[tuple[str, frozenset[str]]]  # (type, codelists read it is coded in) of a patient


class Unread:
    """A ruleset's criteria (by identity, nested ones too) with the records they read, and the
    findings kept for patients with none of them. `criteria`: the top-level ones."""

    def __init__(self, criteria: Iterable[Any], codelists: Mapping[str, CodeMatcher]) -> None:
        self.criteria = tuple(criteria)  # kept, so that the ids below stay theirs
        self.codelists = codelists
        self.reads = {id(r): reads_of(r) for top in self.criteria for r in walk_criteria(top)}
        self.names = sorted({n for reads in self.reads.values() if reads for n in reads[1]})
        self.names_of = PerRecordKind(self._names)  # the codelists read it is coded in
        self.findings: dict[int, Finding] = {}  # id of a criterion -> its constant finding

    def coded(self, records: Iterable[Record]) -> Coded:
        """(type, the codelists read that it is coded in) of each record coded in any."""
        out = []
        names_of = self.names_of
        for record in records:
            names = names_of(record)
            if names:
                out.append((record.resource_type, names))
        return out

    def _names(self, record: Record) -> frozenset[str]:
        codings = all_codings(record)
        return frozenset(
            n for n in self.names if self.codelists[n].first_match(codings) is not None
        )

    def kept(self, rule: Any, coded: Coded) -> Finding | None:
        """The constant finding kept for `rule`, if the patient (`coded`) has nothing it reads;
        else None (evaluate it)."""
        finding = self.findings.get(id(rule))
        if finding is None:
            return None
        types, names = self.reads[id(rule)]  # type: ignore[misc]  (kept: it reads only records)
        for rtype, coded_in in coded:
            if rtype in types and not names.isdisjoint(coded_in):
                return None
        return finding

    def keep(self, rule: Any, finding: Finding) -> None:
        """Keep `finding` for `rule` if it is the one for every patient with nothing the rule
        reads: a constant finding (`context.is_constant`) of a criterion that reads only records
        (a criterion has one: `context.constant` keys it by the criterion and its parts')."""
        key = id(rule)
        if key not in self.findings and self.reads.get(key) is not None and is_constant(finding):
            self.findings[key] = finding
