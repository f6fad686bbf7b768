"""FHIR Bulk Data Access 2.0 export: kick-off, status polling, resume, download, clean-up.

    result = export(client, ExportRequest(types=("Patient", "Condition"), since=last), work_dir)
    last = result.transaction_time          # the next run's _since

- Kick-off (`bulk_kickoff`): GET (or POST with a Parameters body, GET as the fallback) of
  `[base]/$export`, `[base]/Patient/$export` or `[base]/Group/{id}/$export`; types the server
  cannot export are left out and listed in `ExportResult.unsupported_types`. `ExportUnsupported`
  means: fall back to REST search.
- `work_dir/export-state.json` (atomic, written right after kick-off) holds the request key, the
  server, the status URL and the types left out: a later call with the same request and server
  polls that job instead of kicking off again (a job answering 404/410, or failed, is replaced).
  It is removed after success, when a new job fails, and when a job's manifest or files are
  unusable (that job is also deleted); it is kept on a poll timeout or after retries of
  transient failures, so that the next run resumes.
- Polling (`bulk_status`): Retry-After else 1, 2, 4 ... s, within 1..120 s; 429 slows down;
  408/5xx are retried. After `poll_max_wait` s (by `clock`) a ServerError names the status URL.
  A paged manifest (`link` next) is followed on the same origin, at most `max_manifest_pages`.
- Files of every page are downloaded and checked by `bulk_download`: a damaged file (count
  mismatch, truncated stream, wrong line) is `ExportDamaged`; `error` files end up in `errors`
  (their OperationOutcomes whose issues are all "information" in `notes`, only logged) and do not
  fail the export. Then `DELETE` of the status URL (404 ignored, failures logged).
- `supports_export` (in `bulk_kickoff`) tells whether to try $export at all; `ExportRequest` (in
  `bulk_request`) is what is asked for, checked when made.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ips_screen.errors import ServerError
from ips_screen.fhir.bulk_download import Downloaded, Downloader, file_auth, manifest_files
from ips_screen.fhir.bulk_filter import parse_type_filters
from ips_screen.fhir.bulk_http import BulkHttp, TransientError
from ips_screen.fhir.bulk_http import ExportDamaged as ExportDamaged  # re-exported
from ips_screen.fhir.bulk_kickoff import ExportUnsupported as ExportUnsupported  # re-exported
from ips_screen.fhir.bulk_kickoff import kick_off
from ips_screen.fhir.bulk_kickoff import supports_export as supports_export  # re-exported
from ips_screen.fhir.bulk_lines import DEFAULT_MAX_LINE
from ips_screen.fhir.bulk_request import INSTANT_RE, ExportRequest
from ips_screen.fhir.bulk_status import (
    MAX_MANIFEST_PAGES,
    JobFailed,
    JobGone,
    StatusPoller,
    manifest_pages,
)
from ips_screen.fhir.client import FhirClient
from ips_screen.fhir.outcome import request_label

log = logging.getLogger("ips_screen.fhir.bulk")

STATE_FILE = "export-state.json"
FILES_DIR = "files"


@dataclass
class ExportResult:
    transaction_time: str  # manifest transactionTime: the next _since
    files: list[tuple[str, Path]]  # (resourceType, path) of the downloaded output NDJSON
    deleted: list[Path]  # downloaded deleted NDJSON (Bundles with DELETE request entries)
    errors: list[str]  # one line per OperationOutcome of the error files, but ...
    manifest: dict  # the first page of the manifest
    resumed: bool  # True when an earlier job's status URL was reused
    unsupported_types: tuple[str, ...] = ()  # requested types the server could not export
    pages: int = 1  # manifest pages (Bulk Data 2.0 `link` next)
    notes: list[str] = field(default_factory=list)  # ... those whose issues only inform


def export(
    client: FhirClient,
    request: ExportRequest,
    work_dir: Path,
    *,
    max_parallel: int = 2,
    poll_max_wait: float = 3600.0,
    kickoff: str = "get",
    max_line: int = DEFAULT_MAX_LINE,
    max_manifest_pages: int = MAX_MANIFEST_PAGES,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str, dict], None] | None = None,
) -> ExportResult:
    """Run (or resume) a Bulk Data export; download its files into `work_dir/files/`.
    `kickoff` is "get" or "post" (with GET as the fallback); `max_line` caps one NDJSON line."""
    if max_parallel < 1:
        raise ValueError("max_parallel must be 1 or more")
    notify = progress or (lambda event, data: None)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / STATE_FILE
    http = BulkHttp(client, sleep)
    poller = StatusPoller(http, sleep, clock, notify, poll_max_wait)
    manifest: dict | None = None
    saved = _saved_state(state_path, client, request)
    status_url: str | None = saved["status_url"] if saved else None
    resumed = status_url is not None
    asked = request.key()
    unsupported: tuple[str, ...] = ()
    if saved and status_url:
        log.info("resuming the export job kicked off at %s", saved.get("kicked_off_at"))
        notify("resume", {"level": request.level, "kicked_off_at": saved.get("kicked_off_at")})
        unsupported = tuple(t for t in saved.get("unsupported") or () if t in request.types)
        request = _without(request, unsupported)
        try:
            manifest = poller.manifest(status_url)
        except (JobGone, JobFailed):
            log.warning("the saved export job is gone or failed; starting a new one")
            state_path.unlink(missing_ok=True)
            resumed = False
    if manifest is None:
        started = kick_off(http, request, kickoff)
        status_url, request, unsupported = started.status_url, started.request, started.unsupported
        kicked_off_at = datetime.fromtimestamp(http.now(), UTC).isoformat(timespec="seconds")
        state = {"key": asked, "base_url": client.base_url, "status_url": status_url}
        _write_state(
            state_path, {**state, "unsupported": [*unsupported], "kicked_off_at": kicked_off_at}
        )
        notify(
            "kickoff", {"level": request.level, "types": [*request.types], "since": request.since}
        )
        try:
            manifest = poller.manifest(status_url)
        except (JobGone, JobFailed):
            state_path.unlink(missing_ok=True)
            raise
    assert status_url is not None
    try:
        pages = manifest_pages(http, manifest, status_url, max_manifest_pages)
        transaction_time, downloaded = _download(
            http, request, pages, work_dir, max_parallel, max_line, notify
        )
    except ServerError as exc:
        if not isinstance(exc.__cause__, TransientError):  # a bad job: do not resume it
            log.warning("dropping the export job: its manifest or files are unusable")
            _delete_job(http, status_url)
            state_path.unlink(missing_ok=True)
        raise
    errors = [text for done in downloaded for text in done.errors]
    if errors:
        log.warning("the export's error files hold %d OperationOutcome(s)", len(errors))
    notes = [text for done in downloaded for text in done.notes]
    for text in notes:
        log.info("the export's error files inform: %s", text)
    _delete_job(http, status_url)
    state_path.unlink(missing_ok=True)
    result = ExportResult(
        transaction_time=transaction_time,
        files=[(d.entry.line_type, d.path) for d in downloaded if d.entry.kind == "output"],
        deleted=[d.path for d in downloaded if d.entry.kind == "deleted"],
        errors=errors,
        manifest=manifest,
        resumed=resumed,
        unsupported_types=unsupported,
        pages=len(pages),
        notes=notes,
    )
    counts = {"files": len(result.files), "deleted": len(result.deleted), "errors": len(errors)}
    notify("complete", {**counts, "resumed": resumed, "unsupported_types": [*unsupported]})
    return result


def _without(request: ExportRequest, types: tuple[str, ...]) -> ExportRequest:
    if not types:
        return request
    kept = tuple(t for t in request.types if t not in types)
    filters = tuple(f for f in request.type_filters if f.partition("?")[0] in kept)
    return replace(request, types=kept, type_filters=filters)


def _download(
    http: BulkHttp,
    request: ExportRequest,
    pages: list[tuple[str, dict]],
    work_dir: Path,
    max_parallel: int,
    max_line: int,
    notify: Callable[[str, dict], None],
) -> tuple[str, list[Downloaded]]:
    manifest = pages[0][1]
    transaction_time = manifest.get("transactionTime")
    if not isinstance(transaction_time, str) or not transaction_time:
        raise ServerError("the export manifest has no transactionTime")
    if not INSTANT_RE.match(transaction_time):
        log.warning("the manifest's transactionTime is not a FHIR instant: the next _since fails")
    entries = [e for url, page in pages for e in manifest_files(page, url, request.types)]
    send_auth = file_auth(entries, http.client, manifest.get("requiresAccessToken"))
    notify(
        "manifest",
        {"transaction_time": transaction_time, "files": len(entries), "pages": len(pages)},
    )
    filters = parse_type_filters(request.type_filters)
    downloader = Downloader(
        http, work_dir / FILES_DIR, send_auth, filters, max_parallel, notify, max_line
    )
    return transaction_time, downloader.run(entries)


def _delete_job(http: BulkHttp, status_url: str) -> None:
    what = f"{request_label('DELETE', status_url)} (export clean-up)"
    try:
        status = http.call("DELETE", status_url, what).status_code
    except ServerError as exc:
        log.warning("could not delete the export job (%s); the server will expire it", exc)
        return
    if status == 404:
        log.info("%s -> 404: the job was already gone", what)
    elif not 200 <= status < 300:
        log.warning("%s -> %d; the server will expire the job", what, status)


def _saved_state(path: Path, client: FhirClient, request: ExportRequest) -> dict | None:
    try:
        state = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError):
        log.warning("%s is unreadable; starting a new export", path.name)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("status_url"), str):
        log.warning("%s is not an export state; starting a new export", path.name)
        return None
    if state.get("key") != request.key() or state.get("base_url") != client.base_url:
        log.info("%s is for another request or server; starting a new export", path.name)
        return None
    return state


def _write_state(path: Path, state: dict) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    with part.open("wb") as out:
        out.write(orjson.dumps(state, option=orjson.OPT_INDENT_2))
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
