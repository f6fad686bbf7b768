"""`--write` from a Spark screen: the proposals written from the driver in bounded batches,
under the practice lock and the server's write lease, as the single-machine screen writes them.

The proposed decisions come from Spark one partition at a time, in patient order
(`SparkScreen.proposed`); every `batch` of them goes through `writeback.writer.write_proposals`
(a lookup of the proposal's deterministic identifier, then one transaction per patient only when
it is absent: idempotent), with the lease renewed as writing goes on. The duplicate sweep runs
once, after the last batch. The driver never holds more than a partition and a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path

from ips_screen import __version__
from ips_screen.engine import Decision
from ips_screen.fhir.client import FhirClient
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback.writer import (
    PracticeLock,
    ServerLease,
    WriteReport,
    sweep_into,
    write_proposals,
)

log = logging.getLogger("ips_screen.spark")

DEFAULT_WRITE_BATCH = 500  # proposed patients per batch


def batches(items: Iterable[Decision], size: int) -> Iterator[list[Decision]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def write_in_batches(
    client: FhirClient,
    proposed: Iterable[Decision],
    ruleset: CompiledRuleset,
    *,
    lock_path: Path,
    now: datetime,
    owner: str | None = None,
    batch: int = DEFAULT_WRITE_BATCH,
) -> WriteReport:
    """Write every proposed decision not on the server yet, `batch` patients at a time, then
    sweep duplicates; `LockHeld` when another writer holds the lock or the lease."""
    report = WriteReport()
    with PracticeLock(lock_path, base_url=client.base_url), ServerLease(client) as lease:
        for n, chunk in enumerate(batches(proposed, batch), start=1):
            written = write_proposals(
                client,
                chunk,
                ruleset,
                now=now,
                owner=owner,
                tool_version=__version__,
                sweep=False,
                lease=lease,
            )
            report.results.extend(written.results)
            log.info("batch %d: %d proposed patients written or checked", n, len(report.results))
        sweep_into(report, client, ruleset, now=now, tool_version=__version__, lease=lease)
    log.info("%s", report.summary_line())
    return report
