"""proposals.json: one FHIR transaction Bundle of every proposal (the Device, then each proposed
patient's resources), indented, keys sorted: the Bundle `proposals.build.build_transaction`
builds, written one patient at a time in patient order, so no screen holds it whole.

A patient's entries depend on the run only through `now` (every resource holds it as the same
FHIR dateTime) and the decision's as-of date (in the clinician's note). `proposal_template`
builds them with a fixed time (SENTINEL) and a placeholder as-of date (AS_OF_PLACEHOLDER) that
the writer replaces by the run's, so a template can be cached with the decision and reused on
later nights without building and validating the resources again (nightly/screen.py).

A template still being made on another process (a `Future`, nightly/proposal_maker.py) waits in
line: the writer writes the templates in patient order as soon as those before them (and the
Device entry, which may be made there too) are made, and waits for the rest when it finishes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime
from typing import BinaryIO

import orjson

from ips_screen import __version__
from ips_screen.dates import long_date
from ips_screen.engine.decision import Decision
from ips_screen.outputs.registry import register
from ips_screen.outputs.staging import StagedFolder
from ips_screen.outputs.summary import SummaryKey
from ips_screen.outputs.writers import Finished, Lines, OutputWriter, PatientOutput, RunInfo
from ips_screen.proposals.build import proposal_entries
from ips_screen.proposals.common import Entry, device_entry, fhir_datetime, transaction
from ips_screen.ruleset.loader import CompiledRuleset

BUFFER = 1 << 20
_ENTRY = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
_BUNDLE = _ENTRY | orjson.OPT_APPEND_NEWLINE
_BUNDLE_HEAD = b'{\n  "entry": [\n'
_BUNDLE_TAIL = b'\n  ],\n  "resourceType": "Bundle",\n  "type": "transaction"\n}\n'
SENTINEL = datetime(1900, 1, 1, tzinfo=UTC)  # no record or text of a proposal holds this time
AS_OF_PLACEHOLDER = "AS-OF-7f3a9c1e"  # nor this text


def _entry_bytes(entry: Entry) -> bytes:
    """One entry as it appears in the indented, sorted-key Bundle (at depth 2)."""
    text = orjson.dumps(entry.to_dict(), option=_ENTRY)
    return b"    " + text.replace(b"\n", b"\n    ")


def proposal_template(decision: Decision, ruleset: CompiledRuleset, owner: str | None) -> bytes:
    """A proposed patient's entries, as they follow the entries before them, at SENTINEL and as
    of AS_OF_PLACEHOLDER."""
    entries = proposal_entries(
        replace(decision, as_of=AS_OF_PLACEHOLDER),
        ruleset,
        now=SENTINEL,
        owner=owner,
        tool_version=__version__,
    )
    ordered = sorted(entries, key=lambda e: (e.resource["resourceType"], e.full_url))
    return b"".join(b",\n" + _entry_bytes(entry) for entry in ordered)


def device_bytes() -> bytes:
    """The tool's Device entry, as it begins the Bundle's entries."""
    return _entry_bytes(device_entry(__version__))


def _dumped_time(now: datetime) -> bytes:
    """`now` as every resource of a template holds it (JSON, quoted): `fhir_datetime`, which
    writes it as the R4B models do (tests/unit/test_proposals.py holds the two equal)."""
    return orjson.dumps(fhir_datetime(now))


@register
class ProposalsJson(OutputWriter):
    name = "proposals"
    filename = "proposals.json"
    order = 30

    def begin(self, folder: StagedFolder, run: RunInfo) -> None:
        super().begin(folder, run)
        self.started = False
        self.when, self.sentinel = _dumped_time(run.now), _dumped_time(SENTINEL)
        self.as_of = long_date(run.as_of).encode()  # the clinician note's "records up to" day
        self.handle: BinaryIO = folder.open(self.filename, "wb", buffering=BUFFER)
        self.waiting: deque[bytes | Future[bytes]] = deque()  # in patient order

    def add(self, patient: PatientOutput) -> None:
        if patient.proposed is None:
            return
        template = patient.proposal
        if template is None:
            decision = patient.proposed.decision
            template = proposal_template(decision, self.run.ruleset, self.run.owner)
        self.waiting.append(template)
        self._write_made()

    def _write_made(self, wait: bool = False) -> None:
        """Write the templates waiting that are made, in order, up to the first that is not, once
        the Device entry is made (`wait`: every one, as it is made)."""
        waiting = self.waiting
        device = self.run.device
        if not (self.started or wait or device is None or device.done()):
            return  # the Bundle begins with the Device entry: none is written before it
        while waiting:
            template = waiting[0]
            if isinstance(template, Future):
                if not (wait or template.done()):
                    return
                template = template.result()
            waiting.popleft()
            self._write(template)

    def _write(self, template: bytes) -> None:
        if not self.started:
            device = self.run.device.result() if self.run.device is not None else device_bytes()
            self.handle.write(_BUNDLE_HEAD + device)
            self.started = True
        entries = template.replace(self.sentinel, self.when)
        self.handle.write(entries.replace(AS_OF_PLACEHOLDER.encode(), self.as_of))

    def add_run(self, patients: Sequence[tuple[str, SummaryKey]], lines: Lines) -> None:
        """None of them is proposed: nothing to write."""

    def finish(self, done: Finished) -> None:
        self._write_made(wait=True)
        if self.started:
            self.handle.write(_BUNDLE_TAIL)
        else:
            self.handle.write(orjson.dumps(transaction([]), option=_BUNDLE))
        self.handle.close()

    def close(self) -> None:
        self.handle.close()
