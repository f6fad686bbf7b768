"""The run ledger: every nightly run, and the digest of each patient's decision after the last one.

    runs       one row per nightly run: started, finished, status (running | ok | errors |
               failed | interrupted), as_of, ruleset "<id>@<version>", counts (JSON),
               new_proposals, errors (JSON list of one-line messages), mode (full | incremental),
               and the pid and host of the process running it (columns added to older ledgers
               when a run starts)
    decisions  patient id -> digest of the patient's decision after the last run, so the next run
               can count the patients whose decision changed

The digests of a run are staged in a temporary table while screening and become the `decisions`
table only once the run's outputs are written (`commit_digests`), which also drops the digests of
patients no longer in the facts store (its `patients` table, in the same file).

Rows hold counts and messages only, never patient data beyond resource ids; anything shaped like
a secret in a message is redacted before it is stored (`secret_values.redact`).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from itertools import islice
from typing import Any

import orjson

from ips_screen.engine.decision import Decision
from ips_screen.secret_values import redact
from ips_screen.store.database import Database

BATCH_ROWS = 10_000

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    as_of TEXT NOT NULL,
    ruleset TEXT NOT NULL,
    counts TEXT,
    new_proposals INTEGER,
    errors TEXT,
    mode TEXT NOT NULL CHECK (mode IN ('full', 'incremental'))
);
CREATE TABLE IF NOT EXISTS decisions (
    patient_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS digest_stage "
    "(patient_id TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID"
)
_RUN_COLUMNS = "id, started, finished, status, as_of, ruleset, counts, new_proposals, errors, mode"
_OWNER_COLUMNS = {"pid": "INTEGER", "host": "TEXT"}  # added after the first release


def decision_digest(decision: Decision) -> str:
    """What a practice would call "the decision": outcome, reasons, flags, priority, the links a
    proposal would carry and the ruleset. Not the trace or the as-of date, which change with time
    alone without changing what anyone should do."""
    key = {
        "outcome": decision.outcome,
        "reasons": list(decision.reasons),
        "flags": list(decision.flags),
        "priority": decision.priority,
        "ruleset": decision.ruleset,
        "links": [
            list(decision.links.reasons),
            list(decision.links.supporting),
            list(decision.links.pain),
            decision.links.owner,
        ],
    }
    return hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class RunLedger:
    """The runs and decisions tables of the state database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs -------------------------------------------------------------------------------------

    def _add_owner_columns(self) -> None:
        """Add the pid and host columns to a ledger made before they existed."""
        present = {row[1] for row in self.db.sql.execute("PRAGMA table_info(runs)")}
        missing = [(name, kind) for name, kind in _OWNER_COLUMNS.items() if name not in present]
        if missing:
            with self.db.transaction() as db:
                for name, kind in missing:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def start_run(self, *, started: datetime, as_of: date, ruleset: str, mode: str) -> int:
        """Record that a run began, by this process on this host; returns its id (1, 2, ...)."""
        self._add_owner_columns()
        with self.db.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started, status, as_of, ruleset, mode, pid, host) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (
                    started.isoformat(timespec="seconds"),
                    as_of.isoformat(),
                    ruleset,
                    mode,
                    os.getpid(),
                    socket.gethostname(),
                ),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def interrupt_unfinished(self, *, finished: datetime) -> list[dict]:
        """Mark every run still `running` as `interrupted`, with a message naming the process
        that ran it; the runs marked (id, started, pid, host). Call it only while holding the
        lock every run of this store holds (nightly/run.py), which proves none is running:
        those rows are left by runs that were killed or lost their machine."""
        self._add_owner_columns()
        rows = self.db.sql.execute(
            "SELECT id, started, pid, host FROM runs WHERE status = 'running' ORDER BY id"
        ).fetchall()
        marked = []
        with self.db.transaction() as db:
            for run_id, started, pid, host in rows:
                where = f"pid {pid if pid is not None else 'unknown'} on {host or 'unknown host'}"
                message = f"interrupted: the run ({where}) stopped without finishing"
                db.execute(
                    "UPDATE runs SET status = 'interrupted', finished = ?, errors = ? "
                    "WHERE id = ? AND status = 'running'",
                    (
                        finished.isoformat(timespec="seconds"),
                        orjson.dumps([message]).decode(),
                        run_id,
                    ),
                )
                marked.append({"id": run_id, "started": started, "pid": pid, "host": host})
        return marked

    def finish_run(
        self,
        run_id: int,
        *,
        finished: datetime,
        status: str,
        counts: Mapping[str, Any],
        new_proposals: int,
        errors: list[str],
        mode: str | None = None,
    ) -> None:
        """Record how a run ended (status ok, errors or failed) and what it counted."""
        with self.db.transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, status = ?, counts = ?, new_proposals = ?, "
                "errors = ?, mode = COALESCE(?, mode) WHERE id = ?",
                (
                    finished.isoformat(timespec="seconds"),
                    status,
                    orjson.dumps(dict(counts), option=orjson.OPT_SORT_KEYS).decode(),
                    new_proposals,
                    orjson.dumps([redact(e) for e in errors]).decode(),
                    mode,
                    run_id,
                ),
            )

    def recent_runs(self, n: int) -> list[dict]:
        """The last `n` runs, oldest first, with counts and errors decoded."""
        rows = self.db.sql.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?",  # noqa: S608 (constant)
            (n,),
        ).fetchall()
        names = [c.strip() for c in _RUN_COLUMNS.split(",")]
        out = []
        for row in reversed(rows):
            item = dict(zip(names, row, strict=True))
            item["counts"] = orjson.loads(item["counts"]) if item["counts"] else {}
            item["errors"] = orjson.loads(item["errors"]) if item["errors"] else []
            out.append(item)
        return out

    # -- decisions --------------------------------------------------------------------------------

    def decision_digests(self) -> dict[str, str]:
        """Patient id -> digest of their decision after the last run."""
        return dict(self.db.sql.execute("SELECT patient_id, digest FROM decisions"))

    def replace_decision_digests(self, digests: Mapping[str, str]) -> None:
        """Make `digests` the whole table, in one transaction."""
        items = iter(digests.items())
        with self.db.transaction() as db:
            db.execute("DELETE FROM decisions")
            while chunk := list(islice(items, BATCH_ROWS)):
                db.executemany("INSERT INTO decisions (patient_id, digest) VALUES (?, ?)", chunk)

    def stage_digests(self, items: Iterable[tuple[str, str]]) -> None:
        """Digests of tonight's decisions that differ from the last run's (or were re-made after
        writing proposals); they replace the ledger's on `commit_digests`."""
        rows = list(items)
        if not rows:
            return
        with self.db.transaction() as db:
            db.execute(_STAGE)
            db.executemany("INSERT OR REPLACE INTO digest_stage VALUES (?, ?)", rows)

    def clear_staged_digests(self) -> None:
        with self.db.transaction() as db:
            db.execute(_STAGE)
            db.execute("DELETE FROM digest_stage")

    def digest_count(self) -> int:
        """Patients with a digest after the last run."""
        return self.db.sql.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]

    def commit_digests(self, *, drop_gone: bool = True) -> None:
        """Make the digests those of tonight's screen: the staged ones replace theirs and
        (`drop_gone`: some may be left) the digests of patients no longer in the facts store go,
        in one transaction."""
        with self.db.transaction() as db:
            db.execute(_STAGE)
            db.execute(
                "INSERT INTO decisions (patient_id, digest) SELECT patient_id, digest "
                "FROM digest_stage WHERE true "
                "ON CONFLICT (patient_id) DO UPDATE SET digest = excluded.digest"
            )
            if drop_gone:
                db.execute(
                    "DELETE FROM decisions WHERE NOT EXISTS "
                    "(SELECT 1 FROM patients p WHERE p.id = decisions.patient_id)"
                )
            db.execute("DELETE FROM digest_stage")
