"""Steps of the nightly run: proposal counts, trends, the run folders (screening the
store: nightly/screen.py)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.facts.model import PatientFacts

log = logging.getLogger("ips_screen.nightly")

LATEST = "latest"
OPEN_STATUSES = frozenset({"draft", "active", "on-hold"})


@dataclass
class ProposalTally:
    """The tool's own proposals (ServiceRequests with its proposal identifier) by state."""

    open: int = 0
    accepted: int = 0
    declined: int = 0

    def add(self, facts: PatientFacts) -> None:
        self.add_counts(self.count(facts))

    def add_counts(self, counts: tuple[int, int, int]) -> None:
        self.open += counts[0]
        self.accepted += counts[1]
        self.declined += counts[2]

    @staticmethod
    def count(facts: PatientFacts) -> tuple[int, int, int]:
        """(open, accepted, declined) of one patient's proposals."""
        open_, accepted, declined = 0, 0, 0
        for record in facts.records:
            if record.resource_type != "ServiceRequest" or record.intent != "proposal":
                continue
            if not any(system == PROPOSAL_ID_SYSTEM for system, _ in record.identifiers):
                continue
            if record.status in OPEN_STATUSES:
                open_ += 1
            elif record.status == "completed":
                accepted += 1
            elif record.status == "revoked":
                declined += 1
        return open_, accepted, declined


def trend_row(run_id: int, as_of: str, counts: Mapping[str, object]) -> dict:
    """One point of the report's trends chart."""
    return {
        "run": run_id,
        "as_of": as_of,
        "propose": counts.get("propose", 0),
        "not_eligible": counts.get("not_eligible", 0),
        "excluded": counts.get("excluded", 0),
        "open_proposals": counts.get("open_proposals", 0),
    }


def trends_from(runs: list[dict], tonight: dict, keep: int = 14) -> list[dict]:
    """Earlier completed runs (oldest first) and tonight's, at most `keep` points."""
    earlier = [
        trend_row(r["id"], r["as_of"], r["counts"])
        for r in runs
        if r["status"] in ("ok", "errors") and r["id"] != tonight["run"]
    ]
    return [*earlier, tonight][-keep:]


def link_latest(runs_dir: Path, run_dir: Path) -> None:
    """runs/latest -> this run's folder (a relative symlink, replaced atomically; a copy where
    symlinks are not available)."""
    latest = runs_dir / LATEST
    temporary = runs_dir / f".{LATEST}.tmp"
    try:
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        os.symlink(run_dir.name, temporary, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(temporary, latest)
    except OSError:
        log.info("no symlinks here: copying the run to %s", latest)
        if latest.is_symlink():
            latest.unlink()
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(run_dir, latest)


def prune_runs(runs_dir: Path, keep: int, current: Path) -> list[Path]:
    """Remove the oldest run folders beyond `keep` (never the current one); the removed."""
    folders = sorted(
        (p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    removed = []
    for folder in folders[: max(0, len(folders) - keep)]:
        if folder.resolve() != current.resolve():
            shutil.rmtree(folder)
            removed.append(folder)
    if removed:
        log.info("removed %d old run folders", len(removed))
    return removed
