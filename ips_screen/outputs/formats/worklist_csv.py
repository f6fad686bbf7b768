"""worklist.csv: the proposed patients, early priority first (`outputs.summary.worklist_rows`),
UTF-8 with "\\n" line endings and a header even when empty; no cell starts like a formula."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import TextIO

from ips_screen.engine.decision import Decision
from ips_screen.outputs.registry import register
from ips_screen.outputs.summary import REASON_STEPS, WORKLIST_COLUMNS, worklist_rows
from ips_screen.outputs.writers import Finished, OutputWriter
from ips_screen.ruleset.loader import CompiledRuleset


def write_worklist_csv(
    decisions: Iterable[Decision],
    handle: TextIO,
    step_ids: Sequence[str] = REASON_STEPS,
    ruleset: CompiledRuleset | None = None,
) -> None:
    """The worklist as CSV into `handle` (opened with newline="")."""
    writer = csv.DictWriter(handle, fieldnames=WORKLIST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(worklist_rows(decisions, step_ids, ruleset))


@register
class WorklistCsv(OutputWriter):
    name = "worklist"
    filename = "worklist.csv"
    order = 20

    def finish(self, done: Finished) -> None:
        with self.folder.open(self.filename, "w", encoding="utf-8", newline="") as handle:
            write_worklist_csv(done.proposed, handle, ruleset=self.run.ruleset)
