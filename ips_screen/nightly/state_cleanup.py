"""What the nightly job clears from its state dir: Bulk downloads (whole records, never kept after
a run), and what runs that crashed left behind.

    remove_downloads(state)            exports/*/files and stray files; each export's
                                       export-state.json (its status URL, no patient data) stays,
                                       so an interrupted export resumes
    clear_crashed_runs(ledger, state, now, store)
                                       downloads, staging folders of outputs never committed
                                       (runs/.<id>.*.tmp), the staging file of a full load of
                                       the store (store.sqlite-load), ledger rows still `running`
                                       marked `interrupted` (and their empty run folders removed)

Both are called under the practice lock (nightly/run.py), which proves no run is in progress.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from datetime import datetime
from pathlib import Path

from ips_screen.store.full_load import remove_stage
from ips_screen.store.ledger import RunLedger

log = logging.getLogger("ips_screen.nightly")

EXPORTS = "exports"  # one work folder per export: files/ (downloads) and export-state.json
RESUME_FILE = "export-state.json"  # ips_screen.fhir.bulk.STATE_FILE: no patient data in it


def remove_downloads(state: Path) -> None:
    """Delete the Bulk downloads under state/exports (whole records: never kept after a run, nor
    after a crash). Each export's export-state.json stays, so an export can still resume."""
    exports = state / EXPORTS
    if not exports.is_dir():
        return
    for work in exports.iterdir():
        if not work.is_dir() or work.is_symlink():
            work.unlink()
            continue
        for item in work.iterdir():
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            elif item.name != RESUME_FILE:
                item.unlink()


def clear_crashed_runs(ledger: RunLedger, state: Path, now: datetime, store: Path) -> None:
    """What runs that did not finish left: downloads, staging folders, the staging file of a
    full load of the `store` (its facts), `running` ledger rows. Called under the practice lock,
    which proves that no run is in progress."""
    remove_downloads(state)
    remove_stage(store)
    runs_dir = state / "runs"
    if runs_dir.is_dir():
        for staging in runs_dir.glob(".*.tmp"):  # outputs.staging.StagedFolder's, never committed
            if staging.is_dir() and not staging.is_symlink():
                shutil.rmtree(staging)
    for run in ledger.interrupt_unfinished(finished=datetime.now(tz=now.tzinfo)):
        log.warning(
            "run %d (started %s, pid %s on %s) did not finish: marked interrupted",
            run["id"],
            run["started"],
            run["pid"] if run["pid"] is not None else "unknown",
            run["host"] or "an unknown host",
        )
        folder = runs_dir / str(run["id"])
        with contextlib.suppress(OSError):  # only an empty folder: a partial one is kept
            folder.rmdir()
