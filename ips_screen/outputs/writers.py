"""The interface every output format implements, and what it is given.

A writer makes one file of the output folder. The folder (`outputs.folder.OutputFolder`) calls,
for every writer chosen (`outputs.registry`):

    begin(folder, run)   once: `folder` is where to create the file (`StagedFolder.open`), `run`
                         what the whole screen shares (ruleset, as-of date, time, Task owner)
    add(patient)         once per patient, in patient-id order (`PatientOutput`)
    add_run(patients, lines)   instead of `add`, for several patients in a row none of whom is
                         proposed, with their lines in one piece (the nightly job's reused
                         decisions); by default `add` for each. `patients` may be read from
                         the store only when first looked at: a writer that needs only the
                         lines should leave it alone
    finish(done)         once, after the last patient (`Finished`: the summary and the decisions
                         kept), to complete the file
    close()              on failure instead of `finish`: release what `begin` opened

A writer that needs only the totals (the summary, the report) leaves `add` alone: it is not called
for writers that do not override it. Files are moved into place by the folder, atomically, after
every writer has finished; a writer never writes outside the staging folder it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

from ips_screen.engine.decision import Decision
from ips_screen.outputs.file_slice import FileSlice
from ips_screen.outputs.proposed import Proposed
from ips_screen.outputs.staging import StagedFolder
from ips_screen.outputs.summary import SummaryKey
from ips_screen.ruleset.loader import CompiledRuleset

Lines = bytes | bytearray | FileSlice  # lines in one piece, each with its line end

# Makes report.html's HTML from the page's values and the template cache folder, elsewhere
# (`outputs.report.page_html`, on the nightly job's helper process: nightly/proposal_maker.py).
PageMaker = Callable[[dict[str, Any], Path | None], Future[str]]


@dataclass(frozen=True)
class RunInfo:
    """What every output of one screen shares."""

    ruleset: CompiledRuleset
    as_of: date
    now: datetime  # the time proposals are authored
    owner: str | None  # the Task owner of proposals
    cache_dir: Path | None = None  # a private folder for compiled templates (`outputs.report`)
    device: Future[bytes] | None = None  # the Device entry, made elsewhere (None: by the writer)
    pages: PageMaker | None = None  # where report.html's HTML is made (None: by the writer)


@dataclass(slots=True)
class PatientOutput:
    """One patient's decision as the outputs take it.

    `line` is the decision's decisions.ndjson line without its newline (`head` + `line`: orjson
    of `Decision.to_dict()` with sorted keys; a cached line comes in two parts), `key` what the
    summary counts of it. When proposed, `proposed` is what the outputs keep of the patient
    (`decision`: the decision itself, read from its line when first asked for) and `proposal`
    its proposals.json entries (`formats.proposals_json.proposal_template`; a `Future` while they
    are being made on another process, nightly/proposal_maker.py; None: built by that writer)."""

    patient: str
    line: bytes | memoryview
    key: SummaryKey
    proposed: Proposed | None = None
    proposal: bytes | Future[bytes] | None = None
    head: bytes = b""

    @property
    def decision(self) -> Decision | None:
        return None if self.proposed is None else self.proposed.decision


@dataclass(frozen=True)
class Finished:
    """What the writers finish with."""

    summary: dict  # the content of summary.json
    proposed: Sequence[Proposed]  # in patient order
    listed: Sequence[Decision]  # not proposed but with data-quality notes (no trace)
    trends: list[dict] | None = None  # earlier runs, for the report (nightly)
    unfinished: list[dict] = field(default_factory=list)  # runs that failed (nightly)
    work: dict | None = None  # the review work outstanding (nightly with a server)


class OutputWriter:
    """One output format: a file name, a name to choose it by, begin/add/finish."""

    name: ClassVar[str]  # chosen by this name (`registry.make_writers`)
    filename: ClassVar[str]  # the file it writes in the output folder
    order: ClassVar[int]  # finished and moved into place in this order (summary.json last)
    default: ClassVar[bool] = True  # written unless the formats are named

    def begin(self, folder: StagedFolder, run: RunInfo) -> None:
        self.folder, self.run = folder, run

    def add(self, patient: PatientOutput) -> None:
        """One patient (not called unless a writer overrides it)."""

    def add_run(self, patients: Sequence[tuple[str, SummaryKey]], lines: Lines) -> None:
        """Several patients in a row, none proposed: (reference, summary key) each, and their
        decisions.ndjson lines, each with its line end, in one piece (bytes, or bytes of another
        file: `file_slice.FileSlice`)."""
        for (patient, key), line in zip(patients, bytes(lines).split(b"\n"), strict=False):
            self.add(PatientOutput(patient, line, key))

    def finish(self, done: Finished) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """Wait for what `finish` left to finish on its own (the output folder calls it once
        every writer's `finish` has returned, before it commits the files)."""

    def close(self) -> None:
        """Release what `begin` opened (after a failure)."""
