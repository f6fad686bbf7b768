"""FHIR Bulk Data Access 2.0 export: kick-off, status polling, resume, download, clean-up.

    result = export(client, ExportRequest(types=("Patient", "Condition"), since=last), work_dir)
    last = result.transaction_time          # the next run's _since

- Kick-off `GET [base]/$export`, `[base]/Patient/$export` or `[base]/Group/{id}/$export` with
  `Prefer: respond-async` (and the client's own Prefer values); 202 + Content-Location is the
  status URL. 404/405/501 or an OperationOutcome `not-supported` raise `ExportUnsupported` (fall
  back to REST search); a missing Group is a plain ServerError; 408/429/5xx are retried.
- `work_dir/export-state.json` (atomic, written right after kick-off) holds the request key, the
  server and the status URL: a later call with the same request and server polls that job
  instead of kicking off again (a job answering 404/410, or failed, is replaced). It is removed
  after success, when a new job fails, and when a job's manifest or files are unusable (that job
  is also deleted); it is kept on a poll timeout or after retries of transient failures, so that
  the next run resumes.
- Polling: 202 waits Retry-After (seconds or HTTP date) else 1, 2, 4 ... s, within 1..120 s;
  X-Progress is logged. 429 doubles the interval for the rest of the job. 408/5xx (unless an
  OperationOutcome says the job failed) are retried, `max_attempts` in a row at most. After
  `poll_max_wait` s (by `clock`) a ServerError names the status URL.
- Files are downloaded and checked by `bulk_download`; `error` files end up in `errors` and do
  not fail the export. Then `DELETE` of the status URL (404 ignored, other failures logged).
  Paged manifests (2.0 `link` next) are not followed: a warning is logged.
- `supports_export` reads the CapabilityStatement, which servers often get wrong. It answers
  False only when a readable statement declares no export operation anywhere and does not claim
  the Bulk Data capability; when absent, unreadable, or declared at another level: True, and the
  kick-off decides.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import orjson
import requests

from ips_screen.errors import ConfigError, ServerError
from ips_screen.fhir.bulk_download import (
    BulkHttp,
    Downloaded,
    Downloader,
    TransientError,
    failure,
    file_auth,
    label,
    manifest_files,
    parse_type_filters,
)
from ips_screen.fhir.client import FHIR_JSON, RETRY_STATUSES, FhirClient

log = logging.getLogger("ips_screen.fhir.bulk")

LEVELS = ("system", "patient", "group")
STATE_FILE = "export-state.json"
FILES_DIR = "files"
POLL_WAIT_MIN, POLL_WAIT_CAP, POLL_BACKOFF_MAX = 1.0, 120.0, 60.0
UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
# IssueType "transient" and its children: the poll failed, not necessarily the job.
TRANSIENT_ISSUES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)
BULK_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_EXPORT_NAMES = {"export": None, "patient-export": "patient", "group-export": "group"}
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FILTER_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}\?\S+$")
_INSTANT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


class ExportUnsupported(ServerError):
    """The server does not do this $export (the level, or the parameters asked for)."""


class _JobGone(ServerError):
    """The server does not know the status URL (404/410)."""


class _JobFailed(ServerError):
    """The server reported that the export job failed."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export. `since` is a FHIR instant (normally the previous transactionTime)."""

    level: Literal["system", "patient", "group"] = "system"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    type_filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "type_filters", tuple(self.type_filters))
        if self.level not in LEVELS:
            raise ConfigError(f"export level must be one of {', '.join(LEVELS)}: {self.level!r}")
        if (self.level == "group") != (self.group_id is not None):
            raise ConfigError("a group id is needed for, and only for, a group-level export")
        if self.group_id is not None and not _ID_RE.match(self.group_id):
            raise ConfigError(f"not a FHIR id: {self.group_id!r}")
        if bad := [t for t in self.types if not _TYPE_RE.match(t)]:
            raise ConfigError(f"not a FHIR resource type: {bad[0]!r}")
        if self.since is not None and not _INSTANT_RE.match(self.since):
            raise ConfigError(f"_since must be a FHIR instant with a time zone: {self.since!r}")
        for text in self.type_filters:
            if not _FILTER_RE.match(text):
                raise ConfigError(f"a _typeFilter must look like Type?param=value: {text!r}")
            if self.types and text.partition("?")[0] not in self.types:
                raise ConfigError(f"a _typeFilter for a type that _type leaves out: {text!r}")

    def key(self) -> str:
        """A stable hash of what is asked for (the order of types and filters does not matter)."""
        data = [self.level, self.group_id, sorted(self.types), self.since]
        return hashlib.sha256(orjson.dumps([*data, sorted(self.type_filters)])).hexdigest()

    def operation_path(self) -> str:
        if self.level == "group":
            return f"Group/{self.group_id}/$export"
        return "Patient/$export" if self.level == "patient" else "$export"

    def params(self) -> list[tuple[str, str]]:
        """Kick-off parameters; a comma inside one _typeFilter query is escaped (%2C) because
        the list of queries is itself comma-separated."""
        params = [("_outputFormat", "application/fhir+ndjson")]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        if self.type_filters:
            params.append(
                ("_typeFilter", ",".join(f.replace(",", "%2C") for f in self.type_filters))
            )
        return params


@dataclass
class ExportResult:
    transaction_time: str  # manifest transactionTime: the next _since
    files: list[tuple[str, Path]]  # (resourceType, path) of the downloaded output NDJSON
    deleted: list[Path]  # downloaded deleted NDJSON (Bundles with DELETE request entries)
    errors: list[str]  # one line per OperationOutcome of the error files
    manifest: dict
    resumed: bool  # True when an earlier job's status URL was reused


def supports_export(client: FhirClient, level: str) -> bool:
    """Whether to try $export at `level`: see the module notes (True unless the server's own
    CapabilityStatement shows no sign of Bulk Data at all)."""
    if level not in LEVELS:
        raise ValueError(f"export level must be one of {', '.join(LEVELS)}: {level!r}")
    statement = client.capabilities()
    if statement is None:
        log.info("no CapabilityStatement: $export support unknown, the kick-off will tell")
        return True
    declared = _declared_levels(statement)
    instantiates = statement.get("instantiates")
    if level in declared:
        return True
    if declared or (isinstance(instantiates, list) and BULK_CAPABILITY in instantiates):
        log.info("$export is not declared at %s level, but elsewhere: trying it", level)
        return True
    log.info("the CapabilityStatement declares no $export operation")
    return False


def _declared_levels(statement: Mapping[str, Any]) -> set[str]:
    levels: set[str] = set()
    for rest in _dicts(statement.get("rest")):
        places: list[tuple[str, object]] = [("system", rest.get("operation"))]
        for res in _dicts(rest.get("resource")):
            if res.get("type") in ("Patient", "Group"):
                places.append((str(res["type"]).lower(), res.get("operation")))
        for place, operations in places:
            for op in _dicts(operations):
                name = str(op.get("name") or "").lower().lstrip("$")
                definition = str(op.get("definition") or "").rstrip("/").rsplit("/", 1)[-1]
                for word in (name, definition.lower()):
                    if word in _EXPORT_NAMES:
                        levels.add(_EXPORT_NAMES[word] or place)
    return levels


def export(
    client: FhirClient,
    request: ExportRequest,
    work_dir: Path,
    *,
    max_parallel: int = 2,
    poll_max_wait: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str, dict], None] | None = None,
) -> ExportResult:
    """Run (or resume) a Bulk Data export; download its files into `work_dir/files/`."""
    if max_parallel < 1:
        raise ValueError("max_parallel must be 1 or more")
    notify = progress or (lambda event, data: None)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / STATE_FILE
    http = BulkHttp(client, sleep)
    poller = _Poller(http, sleep, clock, notify, poll_max_wait)
    manifest: dict | None = None
    saved = _saved_state(state_path, client, request)
    status_url: str | None = saved["status_url"] if saved else None
    resumed = status_url is not None
    if saved and status_url:
        log.info("resuming the export job kicked off at %s", saved.get("kicked_off_at"))
        notify("resume", {"level": request.level, "kicked_off_at": saved.get("kicked_off_at")})
        try:
            manifest = poller.manifest(status_url)
        except (_JobGone, _JobFailed):
            log.warning("the saved export job is gone or failed; starting a new one")
            state_path.unlink(missing_ok=True)
            resumed = False
    if manifest is None:
        status_url = _kick_off(http, request)
        started = datetime.fromtimestamp(http.now(), UTC).isoformat(timespec="seconds")
        state = {"key": request.key(), "base_url": client.base_url, "status_url": status_url}
        _write_state(state_path, {**state, "kicked_off_at": started})
        notify(
            "kickoff", {"level": request.level, "types": [*request.types], "since": request.since}
        )
        try:
            manifest = poller.manifest(status_url)
        except (_JobGone, _JobFailed):
            state_path.unlink(missing_ok=True)
            raise
    assert status_url is not None
    try:
        transaction_time, downloaded = _download(
            http, request, manifest, status_url, work_dir, max_parallel, notify
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
    _delete_job(http, status_url)
    state_path.unlink(missing_ok=True)
    result = ExportResult(
        transaction_time=transaction_time,
        files=[(d.entry.line_type, d.path) for d in downloaded if d.entry.kind == "output"],
        deleted=[d.path for d in downloaded if d.entry.kind == "deleted"],
        errors=errors,
        manifest=manifest,
        resumed=resumed,
    )
    counts = {"files": len(result.files), "deleted": len(result.deleted), "errors": len(errors)}
    notify("complete", {**counts, "resumed": resumed})
    return result


def _download(
    http: BulkHttp,
    request: ExportRequest,
    manifest: dict,
    status_url: str,
    work_dir: Path,
    max_parallel: int,
    notify: Callable[[str, dict], None],
) -> tuple[str, list[Downloaded]]:
    transaction_time = manifest.get("transactionTime")
    if not isinstance(transaction_time, str) or not transaction_time:
        raise ServerError("the export manifest has no transactionTime")
    if not _INSTANT_RE.match(transaction_time):
        log.warning("the manifest's transactionTime is not a FHIR instant: the next _since fails")
    if manifest.get("link"):
        log.warning("the export manifest is paged; only its first page is downloaded")
    entries = manifest_files(manifest, status_url, request.types)
    send_auth = file_auth(entries, http.client, manifest.get("requiresAccessToken"))
    notify("manifest", {"transaction_time": transaction_time, "files": len(entries)})
    filters = parse_type_filters(request.type_filters)
    downloader = Downloader(http, work_dir / FILES_DIR, send_auth, filters, max_parallel, notify)
    return transaction_time, downloader.run(entries)


def _kick_off(http: BulkHttp, request: ExportRequest) -> str:
    client = http.client
    url = f"{client.base_url}/{request.operation_path()}"
    what = f"{label('GET', url)} (export kick-off)"
    headers = {"Accept": FHIR_JSON, "Prefer": client._prefer_with("respond-async")}
    resp = http.call("GET", url, what, params=request.params(), headers=headers)
    if resp.status_code == 202:
        location = resp.headers.get("Content-Location")
        if not location:
            raise ServerError(f"{what}: 202 Accepted without a Content-Location (status URL)")
        log.info("export kicked off at %s level", request.level)
        return urljoin(url, location)
    message = failure(resp, what)
    if resp.status_code in UNSUPPORTED_STATUSES or "not-supported" in _issue_codes(resp):
        if request.level == "group" and resp.status_code == 404 and _group_missing(http, request):
            raise ServerError(f"{message} (Group/{request.group_id} does not exist)")
        raise ExportUnsupported(f"the server does not support this $export: {message}")
    if resp.status_code == 200:
        message += " (expected 202 Accepted: was Prefer: respond-async ignored?)"
    raise ServerError(message)


def _group_missing(http: BulkHttp, request: ExportRequest) -> bool:
    try:
        resp = http.send("GET", f"{http.client.base_url}/Group/{request.group_id}")
    except ServerError:
        return False
    return resp.status_code in (404, 410)


@dataclass
class _Poller:
    http: BulkHttp
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    notify: Callable[[str, dict], None]
    max_wait: float

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.max_wait

    def manifest(self, status_url: str) -> dict:
        """Poll until the manifest; raises _JobGone, _JobFailed or ServerError."""
        what = f"{label('GET', status_url)} (export status)"
        retry = self.http.client.retry
        floor, waits, failures, last = 0.0, 0, 0, POLL_WAIT_MIN
        while True:
            status: int | None = None
            text: str | None = None
            try:
                resp = self.http.send("GET", status_url, headers={"Accept": "application/json"})
            except TransientError as exc:
                failures += 1
                if failures >= retry.max_attempts:
                    raise ServerError(f"{exc} (gave up after {failures} attempts)") from exc
                log.warning("%s; polling again", exc)
                delay = retry.backoff(failures)
            else:
                status, after = resp.status_code, self.http.retry_after(resp)
                codes = _issue_codes(resp)
                if status == 200:
                    return _manifest_json(resp, what)
                if status == 202:
                    failures, waits = 0, waits + 1
                    backoff = min(POLL_BACKOFF_MAX, 2.0 ** (waits - 1))
                    delay = max(after if after is not None else backoff, floor)
                    text = " ".join(resp.headers.get("X-Progress", "").split())[:100] or None
                    log.info("export in progress (%s)", text or "no X-Progress")
                elif status == 429:
                    floor = delay = min(POLL_WAIT_CAP, max(after or 0.0, 2 * max(last, floor)))
                    log.warning("%s -> 429; slowing down to one poll per %.0f s", what, delay)
                elif status in (404, 410):
                    raise _JobGone(f"HTTP {status} from {what}")
                elif status in RETRY_STATUSES and (not codes or codes & TRANSIENT_ISSUES):
                    failures += 1
                    if failures >= retry.max_attempts:
                        failed = _JobFailed if codes else ServerError
                        raise failed(f"{failure(resp, what)} (gave up after {failures} attempts)")
                    delay = after if after is not None else retry.backoff(failures)
                    log.warning("%s -> %d; polling again", what, status)
                else:
                    raise _JobFailed(failure(resp, what))
            last = delay = min(max(delay, POLL_WAIT_MIN), POLL_WAIT_CAP)
            self.notify("poll", {"status": status, "progress": text, "wait": delay})
            remaining = self.deadline - self.clock()
            if remaining <= 0:
                raise ServerError(
                    f"the bulk export at {_without_query(status_url)} did not finish within "
                    f"{self.max_wait:.0f} s; the next run resumes it"
                )
            self.sleep(min(delay, remaining))


def _manifest_json(resp: requests.Response, what: str) -> dict:
    try:
        manifest = orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise ServerError(f"{what}: the export manifest is not valid JSON") from exc
    if not isinstance(manifest, dict) or "resourceType" in manifest:
        raise ServerError(f"{what}: 200 OK but the body is not an export manifest")
    return manifest


def _issue_codes(resp: requests.Response) -> set[str]:
    """The issue codes of an OperationOutcome body; empty for any other body."""
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:
        return set()
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return set()
    return {str(issue.get("code")) for issue in _dicts(body.get("issue"))}


def _delete_job(http: BulkHttp, status_url: str) -> None:
    what = f"{label('DELETE', status_url)} (export clean-up)"
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


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _dicts(value: object) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
