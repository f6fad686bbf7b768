"""One nightly run for one practice: sync the facts store, re-screen everyone, write, report.

    0. the state dir made private: 0700, every file in it 0600 whatever existed before (a folder
       that cannot be made private is refused, exit 4), and the run under umask 077 so every
       file it creates (outputs, store, locks, Bulk downloads) is private too
    1. the practice lock (state_dir/locks/nightly.lock): a second run gets `LockHeld` (exit 7).
       Holding it proves no other run of this state dir is running, so what a crashed run left
       is cleared: its Bulk downloads (exports/*/files; export-state.json stays, so the export
       resumes), its staging folders under runs/, and its ledger row, still `running`, is marked
       `interrupted` (the report lists runs that did not finish)
    2. a ledger row (store.sqlite: runs), with this process's pid and host
    3. sync the store (nightly/sync.py): Bulk `_since` export, REST reload, files reload or files
       applied as changes; a changed ruleset fingerprint or source means a full reload
    4. every patient's decision brought up to date as of tonight (decisions change with time
       alone): evaluated from the store, or a cached decision reused when the patient's facts are
       unchanged and tonight is within its horizon (nightly/screen.py; its line read from the
       last run's decisions.ndjson, recorded in step 6: nightly/last_lines.py); decisions.ndjson and
       proposals.json are streamed into the run folder as they come, and the number of patients
       whose decision differs from the last run's is counted
    5. proposals written to the server (`screen.write`, server sources only) with the duplicate
       sweep, under the server's writer lock; what was written is read back into the store
    6. outputs in runs/<run id>/ (report with trends, worklist.csv, decisions, summary) and
       runs/latest; old run folders pruned; the decisions.ndjson recorded in the store; the
       ledger row finished
    7. whatever happened, the Bulk downloads are removed (they hold whole records)

Exit codes: 0, or 9 (`COMPLETED_WITH_ERRORS`) when some proposals were not written, the sweep
failed, the export reported errors, the Bulk export was damaged (none of it applied, `since`
kept: nightly/sync.py) or unreadable resources were skipped. Types the server could not export
are recorded in the ledger's counts (`unread_types`) and shown in the report.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson

from ips_screen import __version__
from ips_screen.engine import Decision, evaluate
from ips_screen.errors import (
    COMPLETED_WITH_ERRORS,
    ConfigError,
    ServerError,
    UserError,
    environment_failure,
    sqlite_unreadable,
)
from ips_screen.fhir.connection import open_client
from ips_screen.nightly.config import PracticeConfig
from ips_screen.nightly.progress import NoProgress, Progress
from ips_screen.nightly.proposal_maker import ProposalMaker
from ips_screen.nightly.screen import screen_all
from ips_screen.nightly.state_cleanup import clear_crashed_runs, remove_downloads
from ips_screen.nightly.steps import link_latest, prune_runs, trend_row, trends_from
from ips_screen.nightly.sync import (
    BulkApi,
    SyncResult,
    default_bulk_api,
    reread_patients,
    sync_files,
    sync_server,
)
from ips_screen.nightly.work import period_start, work_outstanding
from ips_screen.outputs.file_slice import file_stamp
from ips_screen.outputs.folder import OutputFolder
from ips_screen.outputs.formats.decisions_ndjson import DecisionsNdjson
from ips_screen.presentation.counts import counted
from ips_screen.private_dir import FILE_MODE, PrivateDirError, ensure_private_dir, private_umask
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources.parallel import default_jobs
from ips_screen.store.decision_cache import LinesFile
from ips_screen.store.facts_store import FactsStore
from ips_screen.store.ledger import decision_digest
from ips_screen.store.state import StateStore
from ips_screen.writeback.followup import unanswered_referrals
from ips_screen.writeback.lock import PracticeLock

log = logging.getLogger("ips_screen.nightly")

STORE = "store.sqlite"
TEMPLATES = "templates"  # the report's compiled template, kept from one night to the next
UNFINISHED = ("interrupted", "failed")
_DEFAULT: Any = object()


@dataclass
class NightlyResult:
    run_id: int
    mode: str  # full | incremental
    method: str  # bulk | rest | files
    out_dir: Path
    patients: int
    proposals_new: int
    proposals_open: int
    changes: int
    errors: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    evaluated: int = 0  # patients evaluated from their facts
    reused: int = 0  # patients whose cached decision held tonight

    @property
    def report(self) -> Path:
        return self.out_dir / "report.html"

    @property
    def exit_code(self) -> int:
        return COMPLETED_WITH_ERRORS if self.errors else 0


def run_nightly(
    config: PracticeConfig,
    *,
    now: datetime,
    as_of: date,
    environ: Mapping[str, str],
    progress: Progress | None = None,
    bulk_api: BulkApi | None = _DEFAULT,
) -> NightlyResult:
    """Run once; `LockHeld` when another run holds the practice's lock, `ConfigError` when the
    state folder's store is damaged (`damaged_store`). `bulk_api` replaces the Bulk export
    client (tests); None means "no Bulk export available"."""
    gc.freeze()  # the modules loaded so far: the night's collections need not look at them
    try:
        return _run_nightly(config, now, as_of, environ, progress, bulk_api)
    except sqlite3.DatabaseError as exc:
        damaged = damaged_store(exc, config.output.state_dir / STORE)
        if damaged is None:
            raise
        raise damaged from exc
    finally:
        gc.unfreeze()


def damaged_store(exc: sqlite3.DatabaseError, path: Path) -> ConfigError | None:
    """The one-line error for a store SQLite cannot read (overwritten, cut short, a damaged
    disk), None for any other database error. The store holds only what the runs made of the
    source, the decisions and the runs' record: moved aside, the next run loads it all again."""
    if not sqlite_unreadable(exc):
        return None
    return ConfigError(
        f"[output] state_dir: the store {path} cannot be read ({exc}). Restore it from a "
        f"backup, or move it aside (with any {path.name}-wal and {path.name}-shm beside it): "
        "the next run then loads everything again"
    )


def _run_nightly(
    config: PracticeConfig,
    now: datetime,
    as_of: date,
    environ: Mapping[str, str],
    progress: Progress | None,
    bulk_api: BulkApi | None,
) -> NightlyResult:
    ruleset = load_ruleset(config.screen.rules)
    state = config.output.state_dir
    progress = progress or NoProgress()
    if bulk_api is _DEFAULT:  # the Bulk client (and its imports) only for a server
        bulk_api = default_bulk_api() if config.source.kind == "server" else None
    with private_umask():
        try:
            ensure_private_dir(state)
        except PrivateDirError as exc:
            raise ConfigError(f"[output] state_dir: {exc}") from None
        lock = PracticeLock(
            state / "locks" / "nightly.lock", base_url=f"the state folder {state}", mode=FILE_MODE
        )
        with lock, StateStore(state / STORE) as store:
            clear_crashed_runs(store.ledger, state, now, state / STORE)
            planned = (
                "incremental" if _incremental_possible(store.facts, ruleset, config) else "full"
            )
            tag = f"{ruleset.id}@{ruleset.version}"
            run_id = store.ledger.start_run(started=now, as_of=as_of, ruleset=tag, mode=planned)
            log.info("run %d started (%s, as of %s)", run_id, tag, as_of.isoformat())
            maker = None
            try:
                if planned == "incremental" and (config.screen.jobs or default_jobs()) > 1:
                    maker = ProposalMaker(ruleset, config.screen.owner, state / TEMPLATES)
                return _run(
                    store, run_id, config, ruleset, now, as_of, environ, progress, bulk_api, maker
                )
            except BaseException as exc:
                refused = environment_failure(exc)
                failure = exc if refused is None else refused
                message = str(failure) if isinstance(failure, UserError) else type(exc).__name__
                _record_failure(store, run_id, now, message)
                if refused is not None:
                    raise refused from exc
                raise
            finally:
                if maker is not None:
                    maker.close()
                remove_downloads(state)


def _record_failure(store: StateStore, run_id: int, now: datetime, message: str) -> None:
    """Record the run as failed; when even that cannot be written (the disk that failed the run
    is full), the next run finds it unfinished and says so (`clear_crashed_runs`)."""
    try:
        store.ledger.finish_run(
            run_id,
            finished=datetime.now(tz=now.tzinfo),
            status="failed",
            counts={},
            new_proposals=0,
            errors=[message[:500]],
        )
    except sqlite3.Error as exc:
        log.warning("run %d failed, and could not be recorded as failed: %s", run_id, exc)


def _incremental_possible(store: FactsStore, ruleset: CompiledRuleset, cfg: PracticeConfig) -> bool:
    if cfg.source.kind == "files":
        source = store.get_meta("source") or ""
        return cfg.source.incremental and source.startswith("files:") and _loaded(store, ruleset)
    if cfg.export.mode == "rest":
        return False
    same_source = store.get_meta("source") == f"server:{cfg.server.base_url}"
    return same_source and _loaded(store, ruleset)


def _loaded(store: FactsStore, ruleset: CompiledRuleset) -> bool:
    return store.fingerprint_matches(ruleset) and store.get_since() is not None


def _run(
    store: StateStore,
    run_id: int,
    config: PracticeConfig,
    ruleset: CompiledRuleset,
    now: datetime,
    as_of: date,
    environ: Mapping[str, str],
    progress: Progress,
    api: BulkApi | None,
    maker: ProposalMaker | None = None,
) -> NightlyResult:
    state = config.output.state_dir
    server = config.source.kind == "server"
    runs_dir = state / "runs"
    out_dir = runs_dir / str(run_id)
    client = open_client(config.server, environ) if server else None
    max_line = config.source.max_line_mib << 20
    with client if client is not None else contextlib.nullcontext():
        if client is None:
            assert config.source.path is not None
            synced = sync_files(
                store.facts,
                ruleset,
                config.source.path,
                progress,
                incremental=config.source.incremental,
                max_line=max_line,
                jobs=config.source.jobs,
                skip=(runs_dir,),  # the outputs, should the state folder be in the source's
            )
        else:
            work_dir = state / "exports" / "current"
            synced = sync_server(
                store.facts,
                ruleset,
                client,
                config.export,
                work_dir,
                progress,
                api,
                max_line=max_line,
                page_size=config.server.page_size,
                jobs=config.source.jobs,
            )
        errors = list(synced.errors)
        if skipped := synced.read_report.skipped_count:
            errors.append(
                f"{counted(skipped, 'unreadable resource')} skipped (listed in summary.json)"
            )
        outputs = OutputFolder(
            out_dir,
            ruleset,
            as_of=as_of,
            now=now,
            owner=config.screen.owner,
            cache_dir=state / TEMPLATES,
            device=None if maker is None else maker.device,
            pages=None if maker is None else maker.page,
        )
        try:
            screened = screen_all(
                store,
                ruleset,
                as_of,
                progress,
                outputs,
                reuse=config.screen.reuse_decisions,
                jobs=config.screen.jobs,
                maker=maker,
            )
            store.db.checkpoint_soon()  # the screen's writes, while the outputs finish
            new_proposals = 0
            if client is not None and config.screen.write:
                new_proposals = _write(
                    store,
                    client,
                    config,
                    ruleset,
                    [p.decision for p in outputs.proposed],  # read back from their lines here
                    now,
                    as_of,
                    environ,
                    errors,
                    progress,
                )
            work = None
            if client is not None:
                since, since_run = period_start(store.ledger.recent_runs(14), run_id, now)
                work = work_outstanding(
                    client, ruleset, since=since, since_run=since_run, now=now, new=new_proposals
                )
            late = None
            if client is not None and config.followup.nightly:
                late = _followup(client, outputs, now, config.followup.weeks, errors)
        except BaseException:
            outputs.discard()
            raise
    tally, outcomes = screened.tally, outputs.counted().outcomes
    counts = {
        "patients": screened.patients,
        "propose": outcomes["propose"],
        "not_eligible": outcomes["not-eligible"],
        "excluded": outcomes["excluded"],
        "open_proposals": tally.open + new_proposals,
        "accepted_proposals": tally.accepted,
        "declined_proposals": tally.declined,
        "changes": screened.changes,
        "resources_read": synced.read_report.resources_read,
        "records_removed": synced.stats.removed + synced.deleted,
        "store_bytes": store.size_bytes(),
        "method": synced.method,
    }
    if late is not None:
        counts["followup_unanswered"] = late
    if synced.unread_types:  # types the server could not export, and what that means
        counts["unread_types"] = synced.unread()
    tonight = trend_row(run_id, as_of.isoformat(), counts)
    recent = store.ledger.recent_runs(14)
    trends = trends_from(recent, tonight)
    summary = outputs.finish(
        read_report={**synced.read_report.to_dict(), "unread_types": synced.unread()},
        orphans=store.facts.orphans(),
        unlinked=store.facts.unlinked(),
        trends=trends,
        unfinished=[r for r in recent if r["status"] in UNFINISHED],
        work=work,
    )
    link_latest(runs_dir, out_dir)
    prune_runs(runs_dir, config.output.keep_runs, out_dir)
    _remember_lines(store, state, out_dir, as_of, screened.generation)
    store.ledger.commit_digests(drop_gone=screened.gone > 0)  # once the run's outputs are written
    status = "errors" if errors else "ok"
    store.ledger.finish_run(
        run_id,
        finished=datetime.now(tz=now.tzinfo),
        status=status,
        counts=counts,
        new_proposals=new_proposals,
        errors=errors,
        mode=synced.mode,
    )
    _log_end(run_id, synced, counts, new_proposals, errors)
    return NightlyResult(
        run_id=run_id,
        mode=synced.mode,
        method=synced.method,
        out_dir=out_dir,
        patients=screened.patients,
        proposals_new=new_proposals,
        proposals_open=int(counts["open_proposals"]),
        changes=screened.changes,
        errors=errors,
        summary=summary,
        evaluated=screened.evaluated,
        reused=screened.reused,
    )


def _remember_lines(
    store: StateStore, state: Path, out_dir: Path, as_of: date, generation: int
) -> None:
    """Record tonight's decisions.ndjson, now in place, as the file holding the line of every
    decision cached by tonight's screen (`generation`) or before (nightly/last_lines.py): the
    next night reads the lines it reuses from it."""
    path = out_dir / DecisionsNdjson.filename
    if path.is_file():
        size, mtime_ns, inode = file_stamp(path)
        relative = path.relative_to(state).as_posix()
        lines = LinesFile(relative, as_of.isoformat(), size, mtime_ns, inode, generation)
        store.cache.remember_lines_file(lines)


def _followup(
    client: Any, outputs: OutputFolder, now: datetime, weeks: int, errors: list[str]
) -> int | None:
    """List the accepted referrals still unanswered after `weeks` weeks into followup.json (ids
    and ages only, oldest first); how many (None, and an error, when the server cannot say)."""
    try:
        late = unanswered_referrals(client, now=now, weeks=weeks)
    except ServerError as exc:
        log.warning("follow-up of accepted referrals failed: %s", exc)
        errors.append(f"follow-up of accepted referrals failed: {exc}")
        return None
    listed = {
        "weeks": weeks,
        "as_of": now.isoformat(timespec="seconds"),
        "unanswered": [{**asdict(u), "weeks": u.weeks} for u in late],
    }
    outputs.add_file("followup.json", orjson.dumps(listed, option=orjson.OPT_INDENT_2))
    log.info(
        "follow-up: %s unanswered after %s",
        counted(len(late), "accepted referral"),
        counted(weeks, "week"),
    )
    return len(late)


def _write(
    store: StateStore,
    client: Any,
    config: PracticeConfig,
    ruleset: CompiledRuleset,
    proposed: list[Decision],
    now: datetime,
    as_of: date,
    environ: Mapping[str, str],
    errors: list[str],
    progress: Progress,
) -> int:
    """Write the proposals under the server's writer lock (the one `screen --write` takes) and its
    write lease on the server (`fhir.lease`), read
    them back into the store, and keep the written patients' decisions as they now stand (their
    proposal is open), so the next run counts no change for them."""
    from ips_screen.writeback.writer import ServerLease, default_lock_path, write_proposals

    path = default_lock_path(client.base_url, environ, config.output.lock_dir)
    lock = PracticeLock(path, base_url=client.base_url)
    with lock, ServerLease(client) as lease, progress.stage("written", unit="proposals") as bar:
        written = write_proposals(
            client,
            proposed,
            ruleset,
            now=now,
            owner=config.screen.owner,
            tool_version=__version__,
            progress=lambda n: bar.update(100),  # called every 100 proposals
            lease=lease,
        )
    for patient, message in written.failed:
        errors.append(f"{patient} not written: {message}")
    if written.sweep_error:
        errors.append(f"duplicate sweep: {written.sweep_error}")
    changed = [
        r.patient.removeprefix("Patient/")
        for r in written.results
        if r.status in ("created", "repaired")
    ]
    reread_patients(store.facts, ruleset, client, changed, config.server.page_size)
    digests = []
    for facts in store.facts.facts_of(changed):  # their cached decisions went with the re-read
        digests.append((facts.id, decision_digest(evaluate(ruleset, facts, as_of))))
    store.ledger.stage_digests(digests)
    return written.created


def _log_end(
    run_id: int, synced: SyncResult, counts: dict, new_proposals: int, errors: list[str]
) -> None:
    log.info(
        "run %d done (%s, %s): %s, %s, %d open, %s, %s",
        run_id,
        synced.mode,
        synced.method,
        counted(counts["patients"], "patient"),
        counted(new_proposals, "new proposal"),
        counts["open_proposals"],
        counted(counts["changes"], "change"),
        counted(len(errors), "error"),
        extra={"event": {"run": run_id, "mode": synced.mode, **counts, "errors": len(errors)}},
    )
