"""Bring the facts store up to date with the source: Bulk `_since` export, REST search or files.

    server, Bulk export available   export of the needed types since the stored transactionTime
                                    (everything on a first or full run), its output files and
                                    deleted files applied; the transactionTime becomes the next
                                    `since` only after a complete, error-free apply
    server, REST (mode rest, or auto without Bulk export)
                                    the store is reset and reloaded by search every night (REST
                                    has no reliable `_since` for deletions)
    files                           the store is reset and reloaded from the folder every run
    files, incremental = true       the folder's resources applied as changes (deleted/ holds
                                    Bulk-style deleted files); a full load on the first run, or
                                    when the store was not loaded from files with this ruleset

A changed ruleset fingerprint or another source resets the store first (a full reload).
`ips_screen.fhir.bulk` is imported only when used; until it exists, `auto` falls back to REST.

Bulk integrity (`_sync_bulk`):
- A damaged export (a file with fewer or more lines than its manifest `count`, a truncated or
  corrupt gzip stream, a line that is not JSON of the file's type or is over the line cap) is
  applied not at all: no output or deleted file of it, even the good ones, because a store
  mixing tonight's records of some types with last night's of others is a state the server
  never had (new chronic pain applied, the new "employed" Observation in the damaged file not:
  a proposal that neither night's records support). The store stays as the last complete
  export left it, `since` is kept (the next run asks for the same changes again), the run
  screens that store and ends with errors (exit 9).
- Types the server cannot export (`unsupported_types`) are recorded as `unread_types`, with what
  their absence means (`UNREAD_MEANING`); when such a type can be exported again, the next run
  is a full one (its changes since `since` alone would be incomplete).
- A full export (first run, or after a reset) holding no Patient is an error: an unknown or
  empty Group, or a server that exports nothing; a later night with no changes is logged.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ips_screen.errors import InputError, ServerError
from ips_screen.facts.extract import CodeIndex
from ips_screen.nightly.config import ExportConfig
from ips_screen.nightly.part_load import PartRows, load_parts, part_rows
from ips_screen.nightly.progress import Progress
from ips_screen.reading import HasCodelists, Item, ReadReport
from ips_screen.sources.chunks import Chunk, ReadOptions, plan, read_chunk, release_buffer
from ips_screen.sources.files import DEFAULT_MAX_LINE, discover, iter_resources, resources_of
from ips_screen.sources.parallel import default_jobs, read_parts
from ips_screen.store.facts_store import ApplyStats, FactsStore

log = logging.getLogger("ips_screen.nightly")

REREAD_CHUNK = 50  # patients per search when reading back what a run wrote
UNREAD_META = "bulk_unread_types"  # store meta: the types the last export could not read
UNREAD_MEANING = {
    "Condition": "no diagnoses: chronic pain and exclusions such as palliative care cannot be seen",
    "Observation": "no employment status or other observations: who is out of work is unknown",
    "Procedure": "no procedures: pain reviews and fit notes recorded as procedures cannot be seen",
    "DocumentReference": "no documents: fit notes kept as documents cannot be seen",
    "ServiceRequest": "no referrals: existing IPS referrals and earlier proposals cannot be seen",
    "Task": "no Tasks: declines made outside this tool cannot be seen",
}


class _NeverRaised(Exception):
    """Stands for an exception that a replacement `BulkApi` never raises."""


class ExportResultLike(Protocol):
    transaction_time: str
    files: list[tuple[str, Path]]
    deleted: list[Path]
    errors: list[str]
    resumed: bool


@dataclass(frozen=True)
class BulkApi:
    """What the nightly uses of `ips_screen.fhir.bulk` (replaceable in tests)."""

    supports_export: Callable[[Any, str], bool]
    export: Callable[..., ExportResultLike]
    request: Callable[..., Any]  # ExportRequest
    unsupported: type[Exception]  # ExportUnsupported
    damaged: type[Exception] = _NeverRaised  # ExportDamaged


def default_bulk_api() -> BulkApi | None:
    """The real Bulk export client, or None when this build has none."""
    try:
        from ips_screen.fhir import bulk
    except ModuleNotFoundError as exc:
        if exc.name != "ips_screen.fhir.bulk":
            raise
        return None
    return BulkApi(
        bulk.supports_export,
        bulk.export,
        bulk.ExportRequest,
        bulk.ExportUnsupported,
        bulk.ExportDamaged,
    )


@dataclass
class SyncResult:
    mode: Literal["full", "incremental"]
    method: Literal["bulk", "rest", "files"]
    read_report: ReadReport
    stats: ApplyStats
    deleted: int = 0  # rows removed by Bulk deleted files
    errors: list[str] = field(default_factory=list)  # export errors (the data may be incomplete)
    since: str | None = None  # the `_since` asked for
    unread_types: list[str] = field(default_factory=list)  # types the server could not export

    def unread(self) -> list[dict[str, str]]:
        """The types that could not be read, each with what that means for the screen."""
        return [
            {"type": t, "meaning": UNREAD_MEANING.get(t, f"no {t} resources can be seen")}
            for t in self.unread_types
        ]


def _apply(
    store: FactsStore,
    ruleset: HasCodelists,
    items: Iterator[Item],
    report: ReadReport,
    progress: Progress,
) -> ApplyStats:
    with progress.stage("applied", unit="resources") as bar:
        return store.apply(items, ruleset, report=report, progress=bar.update)


def _load_files(
    store: FactsStore,
    ruleset: HasCodelists,
    files: list[Path],
    report: ReadReport,
    progress: Progress,
    *,
    max_line: int,
    jobs: int | None,
    declared: dict[Path, str] | None = None,
) -> ApplyStats:
    """Apply input files to the store: into an empty store (a full load) in parts on `jobs`
    processes (default: all cores) with the reading shortcuts (`nightly.part_load`), else resource
    by resource (changes to earlier facts). `declared`: the types of Bulk export files."""
    if not store.is_empty():
        items = iter_resources(files, report, max_line=max_line)
        return _apply(store, ruleset, items, report, progress)
    index = CodeIndex(ruleset.codelists.values())
    options = ReadOptions(index, skip_invalid=report.skip_invalid, max_line=max_line)
    exact = replace(options, shortcuts=False)
    chunks = plan(files, declared=declared)

    def reread(chunk: Chunk) -> PartRows:
        return part_rows(read_chunk(chunk, exact))

    jobs = jobs or default_jobs()
    parts = read_parts(chunks, options, jobs, part_rows)
    try:
        with progress.stage("applied", unit="resources") as bar:
            return load_parts(store, parts, reread, report, bar.update, threads=jobs)
    finally:
        parts.close()  # its processes stopped here (see `read_parts`)
        release_buffer()


DELETED_FOLDER = "deleted"  # incremental files: Bulk-style deleted files (Bundles of DELETEs)


def sync_files(
    store: FactsStore,
    ruleset: HasCodelists,
    path: Path,
    progress: Progress,
    *,
    incremental: bool = False,
    max_line: int = DEFAULT_MAX_LINE,
    jobs: int | None = None,
    skip: Iterable[Path] = (),
) -> SyncResult:
    """Reload the store from the folder, or (`incremental`) apply the folder as changes to a store
    already loaded from files with this ruleset. `since` records the end of the last complete
    load, so an interrupted load is done again in full. Nothing inside the folders `skip` is read
    (the runs' outputs, should the state folder be inside the source folder)."""
    source = store.get_meta("source") or ""
    current = store.fingerprint_matches(ruleset) and store.get_since() is not None
    changes = incremental and current and source.startswith("files:")
    if not changes:
        store.reset(ruleset, source=f"files:{path}")
    report = ReadReport(skip_invalid=True)
    found = discover([path], report, skip=skip, empty_ok=changes)
    if not found:
        log.info("%s holds no input file: no changes tonight", path)
    deleted: list[Path] = []
    gone = Path(path) / DELETED_FOLDER
    if incremental and gone.is_dir():
        deleted = [f for f in found if gone in f.parents]
        found = [f for f in found if gone not in f.parents]
    stats = _load_files(store, ruleset, found, report, progress, max_line=max_line, jobs=jobs)
    removed = store.apply_deleted_files(deleted)
    store.set_since(datetime.now(tz=UTC).isoformat(timespec="seconds"))
    mode: Literal["full", "incremental"] = "incremental" if changes else "full"
    return SyncResult(mode, "files", report, stats, removed)


def sync_server(
    store: FactsStore,
    ruleset: HasCodelists,
    client: Any,
    export: ExportConfig,
    work_dir: Path,
    progress: Progress,
    bulk_api: BulkApi | None,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    page_size: int = 500,
    jobs: int | None = None,
) -> SyncResult:
    source = f"server:{client.base_url}"
    if export.mode != "rest":
        if bulk_api is None:
            if export.mode == "bulk":
                raise ServerError("Bulk export is not available in this build of ips-screen")
            log.info("no Bulk export client in this build: reading by REST search")
        elif not bulk_api.supports_export(client, export.level):
            if export.mode == "bulk":
                raise ServerError(
                    f"{client.base_url}: the server does not offer a {export.level}-level Bulk "
                    "export ([export] mode = 'bulk')"
                )
            log.info("the server offers no %s-level Bulk export: REST search", export.level)
        else:
            try:
                return _sync_bulk(
                    store, ruleset, client, export, work_dir, progress, bulk_api, max_line, jobs
                )
            except bulk_api.unsupported as exc:
                if export.mode == "bulk":
                    raise
                log.warning("Bulk export refused (%s): reading by REST search", exc)
    return _sync_rest(store, ruleset, client, page_size, source, progress)


def _sync_bulk(
    store: FactsStore,
    ruleset: HasCodelists,
    client: Any,
    export: ExportConfig,
    work_dir: Path,
    progress: Progress,
    api: BulkApi,
    max_line: int,
    jobs: int | None = None,
) -> SyncResult:
    from ips_screen.sources.fhir_rest import SEARCH_ORDER

    source = f"server:{client.base_url}"
    current = store.fingerprint_matches(ruleset) and store.get_meta("source") == source
    since = store.get_since() if current else None
    unread_before = set(filter(None, (store.get_meta(UNREAD_META) or "").split(",")))
    if since is None:
        store.reset(ruleset, source=source)
    mode: Literal["full", "incremental"] = "full" if since is None else "incremental"
    request = api.request(
        level=export.level, group_id=export.group_id, types=SEARCH_ORDER, since=since
    )
    log.info("Bulk export (%s level) since %s", export.level, since or "the beginning")
    try:
        result = api.export(
            client,
            request,
            work_dir,
            max_parallel=export.max_parallel_downloads,
            poll_max_wait=export.poll_max_wait_seconds,
            kickoff=export.kickoff,
            max_line=max_line,
            progress=_export_event,
        )
    except api.damaged as exc:
        shutil.rmtree(work_dir, ignore_errors=True)  # the files hold clinical data: not kept
        log.warning(
            "the Bulk export is damaged: none of it is applied, and `since` stays at %s so that "
            "the next run asks for the same changes again",
            since or "none (a full export)",
        )
        error = f"Bulk export damaged, nothing applied, `since` kept: {exc}"
        return SyncResult(mode, "bulk", ReadReport(), ApplyStats(), 0, [error], since)
    unread = [t for t in getattr(result, "unsupported_types", ()) or ()]
    report = ReadReport(skip_invalid=True)
    files = [Path(p) for _, p in result.files]
    declared = {Path(p): rtype for rtype, p in result.files}
    stats = _load_files(
        store, ruleset, files, report, progress, max_line=max_line, jobs=jobs, declared=declared
    )
    deleted = store.apply_deleted_files([Path(p) for p in result.deleted])
    shutil.rmtree(work_dir, ignore_errors=True)  # the files hold clinical data: not kept
    if since is None and not report.by_type["Patient"]:
        where = f"Group/{export.group_id}" if export.level == "group" else f"{export.level} level"
        raise ServerError(
            f"the first Bulk export ({where}) holds no Patient, so there is no one to screen: "
            "is the Group id right (an unknown or empty Group exports nothing), and may this "
            "client read the practice's patients?"
        )
    if since is not None and not report.resources_read and not deleted:
        log.info("the Bulk export since %s holds no changes: the store stays as it was", since)
    errors = [f"Bulk export: {e}" for e in result.errors]
    newly_read = sorted(unread_before - set(unread)) if since is not None else []
    if errors:
        log.warning(
            "the export reported %d errors: `since` is kept, so the next run asks again",
            len(errors),
        )
    elif newly_read:
        store.set_since(None)
        log.warning(
            "%s could not be exported before and now can: the next run reloads in full",
            ", ".join(newly_read),
        )
    else:
        store.set_since(result.transaction_time)
    store.set_meta(UNREAD_META, ",".join(unread) or None)
    for t in unread:
        log.warning("%s could not be exported: %s", t, UNREAD_MEANING.get(t, "not read"))
    return SyncResult(mode, "bulk", report, stats, deleted, errors, since, unread)


def _export_event(event: str, data: dict) -> None:
    """Bulk export progress (kick-off, polling, files) as log lines; no patient data in them."""
    level = logging.DEBUG if event in ("poll", "file") else logging.INFO
    log.log(level, "export: %s %s", event, data, extra={"event": {"export": event, **data}})


def _sync_rest(
    store: FactsStore,
    ruleset: HasCodelists,
    client: Any,
    page_size: int,
    source: str,
    progress: Progress,
) -> SyncResult:
    store.reset(ruleset, source=source)
    report = ReadReport(skip_invalid=True)
    try:
        stats = _apply(store, ruleset, rest_resources(client, page_size, report), report, progress)
    except InputError as exc:  # an unreadable entry in the server's answer
        raise ServerError(str(exc)) from exc
    return SyncResult("full", "rest", report, stats)


def rest_resources(
    client: Any,
    page_size: int,
    report: ReadReport,
    params: dict[str, str] | None = None,
    types: tuple[str, ...] | None = None,
) -> Iterator[Item]:
    """Every resource of the needed types on the server (the searches of
    `sources.fhir_rest.read_server`), page by page, checked as files are."""
    from urllib.parse import urlsplit

    from ips_screen.sources.fhir_rest import SEARCH_ORDER

    path = urlsplit(client.base_url).path.rstrip("/")
    for rtype in types or SEARCH_ORDER:
        query: dict[str, str | int] = {**(params or {}), "_count": page_size}
        for page, bundle in enumerate(client.search_pages(rtype, query), 1):
            yield from resources_of(bundle, f"GET {path}/{rtype} (page {page})", report)


def reread_patients(
    store: FactsStore,
    ruleset: HasCodelists,
    client: Any,
    patient_ids: list[str],
    page_size: int,
) -> ApplyStats:
    """Read back the ServiceRequests and Tasks of patients this run wrote proposals for, so the
    store (and the decisions kept for the next run) include them."""
    from ips_screen.sources.fhir_rest import chunks, patient_search_param

    statement = client.capabilities() if patient_ids else None
    total = ApplyStats()
    for chunk in chunks(patient_ids, REREAD_CHUNK):
        refs = ",".join(f"Patient/{pid}" for pid in chunk)
        for rtype in ("ServiceRequest", "Task"):
            params = {patient_search_param(statement, rtype): refs}
            items = rest_resources(client, page_size, ReadReport(), params, (rtype,))
            try:
                stats = store.apply(items, ruleset)
            except InputError as exc:
                raise ServerError(str(exc)) from exc
            total.resources += stats.resources
            total.records += stats.records
    return total
