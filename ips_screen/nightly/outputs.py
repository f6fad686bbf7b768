"""The nightly run's outputs, written while screening, so no night holds every decision in memory.

decisions.ndjson and proposals.json are streamed into the run folder's staging copy, one patient
at a time in patient order; the summary is counted as decisions go by (`SummaryCounter`); only the
proposed patients' decisions are kept whole (the report, the worklist and the writer need them),
and, for the report's data-quality list, a slim copy (no trace) of the other decisions with
data-quality notes. `finish` then writes the report, worklist and summary and moves everything
into place as `outputs.write.write_outputs` does. The files are byte-identical to those of
`pipeline.finish` for the same decisions (tests/unit/test_decision_reuse.py checks it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from ips_screen import __version__
from ips_screen.engine.decision import Decision
from ips_screen.outputs.report import render_report
from ips_screen.outputs.summary import SummaryCounter, SummaryKey, write_worklist_csv
from ips_screen.outputs.write import (
    DECISIONS,
    JSON_OPTIONS,
    PROPOSALS,
    REPORT,
    SUMMARY,
    WORKLIST,
    StagedFolder,
)
from ips_screen.proposals.build import proposal_entries
from ips_screen.proposals.common import (
    Entry,
    device_entry,
    fhir_datetime,
    transaction,
    validated,
)
from ips_screen.ruleset.loader import CompiledRuleset

BUFFER = 1 << 20
LINES_BUFFERED = 3_000  # pieces of decisions.ndjson lines joined into one write
_ENTRY = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
_BUNDLE_HEAD = b'{\n  "entry": [\n'
_BUNDLE_TAIL = b'\n  ],\n  "resourceType": "Bundle",\n  "type": "transaction"\n}\n'
SENTINEL = datetime(1900, 1, 1, tzinfo=UTC)  # no record or text of a proposal holds this time
AS_OF_PLACEHOLDER = "AS-OF-7f3a9c1e"  # nor this text


def _entry_bytes(entry: Entry) -> bytes:
    """One entry as it appears in the indented, sorted-key Bundle (at depth 2)."""
    text = orjson.dumps(entry.to_dict(), option=_ENTRY)
    return b"    " + text.replace(b"\n", b"\n    ")


class ProposalStream:
    """proposals.json (`proposals.build.build_transaction` of the proposed decisions, as
    `write_outputs` writes it), one patient at a time: patients must come in id order.

    A patient's entries depend on the night only through `now` (every resource holds it as the
    same FHIR dateTime) and the decision's as-of date (in the clinician's note). `template` builds
    them with a fixed time (SENTINEL) and a placeholder as-of date (AS_OF_PLACEHOLDER) that `add`
    replaces by tonight's, so a template can be cached with the decision and reused on later
    nights without building and validating the resources again."""

    def __init__(
        self,
        handle: BinaryIO,
        ruleset: CompiledRuleset,
        *,
        as_of: str,
        now: datetime,
        owner: str | None,
    ) -> None:
        self.handle, self.ruleset, self.owner = handle, ruleset, owner
        self.started = False
        self.count = 0
        self.when, self.sentinel = _dumped_time(now), _dumped_time(SENTINEL)
        self.as_of = as_of.encode()

    def template(self, decision: Decision) -> bytes:
        """The patient's entries, as they follow the entries before them, at SENTINEL and as of
        AS_OF_PLACEHOLDER."""
        entries = proposal_entries(
            replace(decision, as_of=AS_OF_PLACEHOLDER),
            self.ruleset,
            now=SENTINEL,
            owner=self.owner,
            tool_version=__version__,
        )
        ordered = sorted(entries, key=lambda e: (e.resource["resourceType"], e.full_url))
        return b"".join(b",\n" + _entry_bytes(entry) for entry in ordered)

    def add(self, template: bytes) -> None:
        if not self.started:
            self.handle.write(_BUNDLE_HEAD + _entry_bytes(device_entry(__version__)))
            self.started = True
        entries = template.replace(self.sentinel, self.when)
        self.handle.write(entries.replace(AS_OF_PLACEHOLDER.encode(), self.as_of))
        self.count += 1

    def close(self) -> None:
        if self.started:
            self.handle.write(_BUNDLE_TAIL)
        else:
            self.handle.write(orjson.dumps(transaction([]), option=JSON_OPTIONS))
        self.handle.close()


def _dumped_time(now: datetime) -> bytes:
    """`now` as the validated resources hold it (JSON, quoted; the R4B models write UTC as Z),
    checked to be the same for a dateTime and an instant."""
    when = fhir_datetime(now)
    task = {"resourceType": "Task", "status": "requested", "intent": "proposal"}
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "Task/t"}],
        "agent": [{"who": {"reference": "Device/d"}}],
    }
    as_datetime = validated({**task, "authoredOn": when})["authoredOn"]
    as_instant = validated({**provenance, "recorded": when})["recorded"]
    if as_datetime != as_instant:  # not expected: the templates could not be trusted
        raise ValueError(f"{when}: written as {as_datetime} and as {as_instant}")
    return orjson.dumps(as_datetime)


class NightlyOutputs:
    """The files of runs/<run id>/, fed one decision at a time (`add`) in patient order."""

    def __init__(
        self,
        out_dir: Path,
        ruleset: CompiledRuleset,
        *,
        as_of: date,
        now: datetime,
        owner: str | None,
    ) -> None:
        self.ruleset, self.owner = ruleset, owner
        self.as_of = as_of.isoformat()
        self.tag = f"{ruleset.id}@{ruleset.version}"
        self.counter = SummaryCounter(ruleset)
        self._keys: Counter[SummaryKey] = Counter()  # counted in the summary by `counted`
        self._lines: list[bytes | memoryview] = []
        self.proposed: list[Decision] = []
        self.listed: list[Decision] = []  # not proposed, with data-quality notes (no trace)
        self.folder = StagedFolder(out_dir)
        try:
            self._decisions = self.folder.path(DECISIONS).open("wb", buffering=BUFFER)
            handle = self.folder.path(PROPOSALS).open("wb", buffering=BUFFER)
        except BaseException:
            self.folder.discard()
            raise
        self._proposals = ProposalStream(handle, ruleset, as_of=self.as_of, now=now, owner=owner)

    def _flush_lines(self) -> None:
        self._decisions.write(b"".join(self._lines))
        self._lines.clear()

    def counted(self) -> SummaryCounter:
        """The summary counts of the decisions added so far."""
        for key, times in self._keys.items():
            self.counter.add_key(key, times)
        self._keys.clear()
        return self.counter

    def proposal(self, decision: Decision) -> bytes:
        """A proposed decision's proposals.json entries, to pass to `add` (and cache)."""
        return self._proposals.template(decision)

    def add(
        self,
        patient: str,
        line: bytes | memoryview,
        key: SummaryKey,
        decision: Decision | None = None,
        proposal: bytes | None = None,
        head: bytes = b"",
    ) -> None:
        """One patient's decision: its decisions.ndjson line (`head` + `line`, no newline), its
        summary `key` (hashable), and when proposed the decision itself and its `proposal`
        entries (None: built here)."""
        lines = self._lines
        lines += (head, line, b"\n")
        if len(lines) >= LINES_BUFFERED:
            self._flush_lines()
        self._keys[key] += 1
        if key.outcome == "propose":
            assert decision is not None
            self.proposed.append(decision)
            self._proposals.add(proposal or self.proposal(decision))
        elif key.quality:
            self.listed.append(
                Decision(
                    patient=patient,
                    outcome=key.outcome,  # type: ignore[arg-type]
                    reasons=tuple(key.reasons),
                    flags=tuple(key.flags),
                    priority=key.priority,  # type: ignore[arg-type]
                    trace=(),
                    as_of=self.as_of,
                    ruleset=self.tag,
                    quality=tuple(key.quality),
                )
            )

    def finish(
        self,
        *,
        read_report: dict,
        orphans: dict[str, int],
        unlinked: int,
        trends: list[dict] | None = None,
        unfinished: list[dict] | None = None,
    ) -> dict:
        """Write the report, worklist and summary, move every file into place; the summary.
        `unfinished`: recent ledger rows of runs that failed or were interrupted, for the
        report."""
        folder = self.folder
        try:
            self._flush_lines()
            self._decisions.close()
            folder.synced(DECISIONS)
            self._proposals.close()
            folder.synced(PROPOSALS)
            summary = self.counted().summary(
                read_report=read_report,
                orphans=orphans,
                unlinked=unlinked,
                as_of=date.fromisoformat(self.as_of),
            )
            shown = [*self.proposed, *self.listed]
            html = render_report(summary, shown, self.ruleset, trends=trends, unfinished=unfinished)
            folder.write(
                WORKLIST,
                lambda path: write_worklist_csv(self.proposed, path, ruleset=self.ruleset),
            )
            folder.write(REPORT, lambda path: path.write_bytes(html.encode("utf-8")))
            data = orjson.dumps(summary, option=JSON_OPTIONS)
            folder.write(SUMMARY, lambda path: path.write_bytes(data))
        except BaseException:
            self.discard()
            raise
        folder.commit([DECISIONS, WORKLIST, PROPOSALS, REPORT, SUMMARY])
        return summary

    def discard(self) -> None:
        """Drop the staged files (a failed run leaves no partial outputs)."""
        self._decisions.close()
        self._proposals.handle.close()
        self.folder.discard()
