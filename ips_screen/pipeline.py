"""The screen as one flow: source -> facts -> decisions -> proposals -> outputs.

Used by the `screen` command; each stage lives in its own sub-package and this module only wires
them. The outputs are written by the writers the nightly job uses (`outputs.folder`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ips_screen import __version__
from ips_screen.engine import Decision, evaluate
from ips_screen.facts.model import PatientFacts
from ips_screen.presentation.counts import counted
from ips_screen.reading import gc_paused
from ips_screen.ruleset.loader import CompiledRuleset

if TYPE_CHECKING:
    from ips_screen.fhir.client import FhirClient
    from ips_screen.sources.population import Population
    from ips_screen.writeback.writer import WriteReport

log = logging.getLogger("ips_screen.pipeline")


@dataclass
class ScreenResult:
    # every patient's decision; when the screen wrote its outputs (`screen_files` and
    # `screen_server` with an out_dir), the proposed patients' only: the others are in
    # decisions.ndjson and were not kept in memory
    decisions: list[Decision]
    summary: dict  # the content of summary.json
    out_dir: Path | None = None  # where the outputs were written (None: not written)


def decide_all(
    ruleset: CompiledRuleset,
    patients: Iterable[PatientFacts],
    as_of: date,
    progress: Callable[[int], None] | None = None,
) -> list[Decision]:
    """Evaluate every patient; sorted by patient reference for deterministic output."""
    return list(decide_in_order(ruleset, patients, as_of, progress))


def decide_in_order(
    ruleset: CompiledRuleset,
    patients: Iterable[PatientFacts],
    as_of: date,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Decision]:
    """Evaluate every patient, one at a time, in patient reference order."""
    for n, facts in enumerate(sorted(patients, key=lambda facts: facts.ref), start=1):
        yield evaluate(ruleset, facts, as_of)
        if progress and n % 10_000 == 0:
            progress(n)


def screen_files(
    sources: list[Path],
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    out_dir: Path | None,
    now: datetime,
    skip_invalid: bool = False,
    owner: str | None = None,
    jobs: int | None = None,
) -> ScreenResult:
    """Dry run over files: decisions, summary, report and proposals, written to out_dir. The
    files are read on `jobs` processes (None: all cores); the outputs are the same for any."""
    from ips_screen.sources import collect, default_jobs

    population = collect(
        sources,
        ruleset,
        skip_invalid=skip_invalid,
        progress=_progress("read"),
        jobs=default_jobs() if jobs is None else jobs,
        skip=() if out_dir is None else (out_dir,),  # a folder of earlier outputs in the input
    )
    report, patients = population.report, len(population.patients)
    log.info(
        "read %s from %s: %s",
        counted(report.resources_read, "resource"),
        counted(report.files_read, "file"),
        counted(patients, "patient"),
    )
    return _screen(population, ruleset, as_of=as_of, out_dir=out_dir, now=now, owner=owner)


def screen_server(
    client: FhirClient,
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    out_dir: Path | None,
    now: datetime,
    owner: str | None = None,
    patients: list[str] | None = None,
    page_size: int = 500,
    skip_invalid: bool = False,
) -> ScreenResult:
    """Dry run over a FHIR server (every patient, or only `patients`): reads by search, writes
    nothing to the server; outputs go to out_dir as for files."""
    from ips_screen.sources.fhir_rest import read_server

    population = read_server(
        client,
        ruleset,
        patients=patients,
        page_size=page_size,
        skip_invalid=skip_invalid,
        progress=_progress("read"),
    )
    read, patients = population.report.resources_read, len(population.patients)
    log.info(
        "read %s from the FHIR server: %s", counted(read, "resource"), counted(patients, "patient")
    )
    return _screen(population, ruleset, as_of=as_of, out_dir=out_dir, now=now, owner=owner)


def _screen(
    population: Population,
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    out_dir: Path | None,
    now: datetime,
    owner: str | None,
) -> ScreenResult:
    # The collector's passes over a large population's facts, which hold no cycles, would cost
    # about a third of the screening: paused while deciding and writing.
    report = {
        "read_report": population.report.to_dict(),
        "orphans": population.orphans,
        "unlinked": population.unlinked,
    }
    with gc_paused():
        if out_dir is None:
            decisions = decide_all(
                ruleset, population.patients.values(), as_of, progress=_progress("screened")
            )
            return finish(decisions, ruleset, as_of=as_of, now=now, out_dir=None, **report)
        # Each decision written as it is made; only the proposed ones kept (a large population's
        # decisions would otherwise all be held until the end: 5 GB at 1,000,000 patients).
        ordered = decide_in_order(
            ruleset, population.patients.values(), as_of, progress=_progress("screened")
        )
        summary, proposed = _write(
            ordered, ruleset, as_of=as_of, now=now, out_dir=out_dir, owner=owner, report=report
        )
        return ScreenResult(proposed, summary, out_dir)


def finish(
    decisions: list[Decision],
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    now: datetime,
    out_dir: Path | None,
    read_report: dict,
    orphans: dict[str, int],
    unlinked: int,
    owner: str | None = None,
    trends: list[dict] | None = None,
    formats: Iterable[str] | None = None,
) -> ScreenResult:
    """Summarise the decisions and write the outputs of the `formats` named (None: the default
    ones) into out_dir, when given, through the writers the nightly job uses
    (`outputs.folder.OutputFolder`). The same decisions in any order give the same files."""
    from ips_screen.outputs.summary import summarise

    report = {"read_report": read_report, "orphans": orphans, "unlinked": unlinked}
    if out_dir is None:
        summary = summarise(decisions, ruleset, as_of=as_of, **report)
        return ScreenResult(decisions, summary)
    ordered = sorted(decisions, key=lambda d: d.patient)
    summary, _ = _write(
        ordered,
        ruleset,
        as_of=as_of,
        now=now,
        out_dir=out_dir,
        owner=owner,
        report=report,
        trends=trends,
        formats=formats,
    )
    return ScreenResult(decisions, summary, out_dir)


def _write(
    ordered: Iterable[Decision],
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    now: datetime,
    out_dir: Path,
    owner: str | None,
    report: dict,
    trends: list[dict] | None = None,
    formats: Iterable[str] | None = None,
) -> tuple[dict, list[Decision]]:
    """Write decisions given in patient order into out_dir, one at a time (nothing is left half
    written on an error); summary.json's content and the proposed patients' decisions."""
    from ips_screen.outputs.folder import OutputFolder

    outputs = OutputFolder(out_dir, ruleset, as_of=as_of, now=now, owner=owner, formats=formats)
    proposed = []
    try:
        for decision in ordered:
            outputs.add_decision(decision)
            if decision.outcome == "propose":
                proposed.append(decision)
    except BaseException:
        outputs.discard()
        raise
    summary = outputs.finish(trends=trends, **report)
    log.info("wrote %s", out_dir)
    return summary, proposed


def write_to_server(
    client: FhirClient,
    ruleset: CompiledRuleset,
    *,
    lock_path: Path,
    as_of: date,
    out_dir: Path | None,
    now: datetime,
    owner: str | None = None,
    patients: list[str] | None = None,
    page_size: int = 500,
    skip_invalid: bool = False,
) -> tuple[ScreenResult, WriteReport]:
    """Screen the server and write the proposals back to it, then sweep duplicates, all under the
    practice lock and the server's write lease (`LockHeld` when another run holds either), so the
    screen sees what is on the server when writing starts. A failed patient does not stop the
    others: see the report."""
    from ips_screen.writeback.writer import PracticeLock, ServerLease, write_proposals

    with PracticeLock(lock_path, base_url=client.base_url), ServerLease(client) as lease:
        result = screen_server(
            client,
            ruleset,
            as_of=as_of,
            out_dir=out_dir,
            now=now,
            owner=owner,
            patients=patients,
            page_size=page_size,
            skip_invalid=skip_invalid,
        )
        written = write_proposals(
            client,
            result.decisions,
            ruleset,
            now=now,
            owner=owner,
            tool_version=__version__,
            progress=_progress("written"),
            lease=lease,
        )
    return result, written


def _progress(what: str) -> Callable[[int], None]:
    def report(n: int) -> None:
        log.info("%s %d so far", what, n)

    return report
