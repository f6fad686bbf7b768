"""One screen's output folder: the decisions go through it one patient at a time, in patient
order, to the writers of the formats chosen (`outputs.registry`), for the screen and the nightly
job alike.

The summary is counted as decisions go by (`SummaryCounter`, from each decision's `SummaryKey`,
which the nightly job caches); only the proposed patients are kept (`outputs.proposed.Proposed`:
what the report and the worklist show of them, and their decision for the FHIR writer, which the
nightly job leaves in its line until asked for) and, for the report's data-quality list, a slim copy
(no trace) of the other decisions with data-quality notes, so memory does not grow with the
practice. `finish` completes every file and moves them into place (`StagedFolder`): atomically,
0600, byte-reproducibly (nothing records the time of writing; JSON keys are sorted). Files of
formats not chosen are removed from the folder, so it never pairs this run's summary with an
earlier run's proposals.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import date, datetime
from pathlib import Path

from ips_screen.engine.decision import Decision
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.outputs.formats.proposals_json import proposal_template
from ips_screen.outputs.proposed import Proposed
from ips_screen.outputs.registry import filenames, make_writers
from ips_screen.outputs.staging import StagedFolder
from ips_screen.outputs.summary import SummaryCounter, SummaryKey
from ips_screen.outputs.writers import (
    Finished,
    Lines,
    OutputWriter,
    PageMaker,
    PatientOutput,
    RunInfo,
)
from ips_screen.ruleset.loader import CompiledRuleset

log = logging.getLogger("ips_screen.outputs")


class OutputFolder:
    """The files of one output folder, fed one decision at a time (`add`) in patient order."""

    def __init__(
        self,
        out_dir: Path,
        ruleset: CompiledRuleset,
        *,
        as_of: date,
        now: datetime,
        owner: str | None,
        formats: Iterable[str] | None = None,
        cache_dir: Path | None = None,
        device: Future[bytes] | None = None,
        pages: PageMaker | None = None,
    ) -> None:
        """`cache_dir`: a private folder where the report's compiled template may be kept from
        one run to the next (`outputs.report`); `device`: proposals.json's Device entry, being
        made on another process, and `pages`: where the report's HTML is made (both
        nightly/proposal_maker.py)."""
        self.ruleset, self.owner = ruleset, owner
        self.as_of = as_of.isoformat()
        self.tag = f"{ruleset.id}@{ruleset.version}"
        self.counter = SummaryCounter(ruleset)
        self._keys: Counter[SummaryKey] = Counter()  # counted in the summary by `counted`
        self.proposed: list[Proposed] = []
        self.listed: list[Decision] = []  # not proposed, with data-quality notes (no trace)
        self._extra: list[str] = []  # files staged by `add_file`
        self.writers = make_writers(formats)
        self.folder = StagedFolder(out_dir)
        run = RunInfo(ruleset, as_of, now, owner, cache_dir, device, pages)
        begun: list[OutputWriter] = []
        try:
            for writer in self.writers:
                writer.begin(self.folder, run)
                begun.append(writer)
        except BaseException:
            self._discard(begun)
            raise
        self._streams = [w for w in self.writers if type(w).add is not OutputWriter.add]

    def counted(self) -> SummaryCounter:
        """The summary counts of the decisions added so far."""
        for key, times in self._keys.items():
            self.counter.add_key(key, times)
        self._keys.clear()
        return self.counter

    def proposal(self, decision: Decision) -> bytes:
        """A proposed decision's proposals.json entries, to pass to `add` (and cache)."""
        return proposal_template(decision, self.ruleset, self.owner)

    def add_decision(self, decision: Decision) -> None:
        """`add` for a decision in hand (a one-off screen)."""
        self.add(decision.patient, decision_line(decision), self.counter.key(decision), decision)

    def add(
        self,
        patient: str,
        line: bytes | memoryview,
        key: SummaryKey,
        decision: Decision | Proposed | None = None,
        proposal: bytes | Future[bytes] | None = None,
        head: bytes = b"",
    ) -> None:
        """One patient's decision: its decisions.ndjson line (`head` + `line`, no newline), its
        summary `key`, and when proposed the decision itself (or what the outputs keep of it,
        `Proposed`) and its `proposal` entries (None: built by the proposals writer, if
        chosen)."""
        self._keys[key] += 1
        proposed = None
        if key.outcome == "propose":
            assert decision is not None
            if isinstance(decision, Decision):
                decision = Proposed.of(decision, key, self.ruleset)
            proposed = decision
            self.proposed.append(proposed)
        elif key.quality:
            self.listed.append(self._slim(patient, key))
        item = PatientOutput(patient, line, key, proposed, proposal, head)
        for writer in self._streams:
            writer.add(item)

    def add_run(self, patients: Sequence[tuple[str, SummaryKey]], lines: Lines) -> None:
        """What `add` does for each of several patients in a row, none of them proposed:
        (reference, summary key) each, and their lines, each with its line end, in one piece."""
        listed = [(patient, key) for patient, key in patients if key.quality]
        self.add_stretch(lines, Counter(key for _, key in patients), listed, patients)

    def add_stretch(
        self,
        lines: Lines,
        keys: Mapping[SummaryKey, int],
        listed: Iterable[tuple[str, SummaryKey]],
        patients: Sequence[tuple[str, SummaryKey]],
    ) -> None:
        """`add_run` for patients whose summary keys are counted already: how many have each
        key, and (reference, key) of those with data-quality notes, in order; `patients` is
        given to the writers as it is (it may load them only when asked)."""
        for key, times in keys.items():
            assert key.outcome != "propose"
            self._keys[key] += times
        self.listed.extend(self._slim(patient, key) for patient, key in listed)
        for writer in self._streams:
            writer.add_run(patients, lines)

    def _slim(self, patient: str, key: SummaryKey) -> Decision:
        return Decision(
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

    def add_file(self, name: str, data: bytes) -> None:
        """Stage one more file (not a screen output: e.g. the nightly job's followup.json), moved
        into place with the others by `finish`."""
        self.folder.write_bytes(name, data)
        self._extra.append(name)

    def finish(
        self,
        *,
        read_report: dict,
        orphans: dict[str, int],
        unlinked: int,
        trends: list[dict] | None = None,
        unfinished: list[dict] | None = None,
        work: dict | None = None,
    ) -> dict:
        """Complete every file and move them into place; the summary. `read_report`: what the
        source read (`reading.ReadReport.to_dict`, plus "unread_types" from a Bulk export);
        `trends` and `unfinished`: earlier runs and those that failed, for the report; `work`: the
        review work outstanding on the server (nightly), which leads the report."""
        try:
            summary = self.counted().summary(
                read_report=read_report,
                orphans=orphans,
                unlinked=unlinked,
                as_of=date.fromisoformat(self.as_of),
            )
            done = Finished(summary, self.proposed, self.listed, trends, unfinished or [], work)
            for writer in self.writers:
                writer.finish(done)
            for writer in self.writers:
                writer.settle()
        except BaseException:
            self.discard()
            raise
        written = [*self._extra, *(w.filename for w in self.writers)]
        stale = [name for name in filenames() if name not in written]
        self.folder.commit(written, remove=stale)
        return summary

    def discard(self) -> None:
        """Drop the staged files (a failed run leaves no partial outputs)."""
        self._discard(self.writers)

    def _discard(self, writers: list[OutputWriter]) -> None:
        """Close every writer and remove the staging folder, whatever a close raises: closing a
        file flushes what it buffered, which fails again on the full disk that failed the run
        (the run's own error is the one raised)."""
        try:
            for writer in writers:
                try:
                    writer.close()
                except Exception:  # kept in the debug log: a bug in a close shows there
                    log.debug("closing %s also failed", writer.filename, exc_info=True)
        finally:
            self.folder.discard()
