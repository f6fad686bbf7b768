"""Downloading the files of a Bulk Data export manifest, for `ips_screen.fhir.bulk`.

- Requests go through `bulk_http.BulkHttp` (the client's auth, timeouts and retry policy).
- `file_auth`: the token is never sent to another origin; a manifest that `requiresAccessToken`
  for files on another origin is refused.
- `Downloader` streams at most `max_parallel` files at once into `files/` (which it owns: earlier
  NDJSON files there are removed), each to a `.part` name renamed when complete. The body is
  decoded and checked by `bulk_lines`: every NDJSON line must be JSON with the entry's
  resourceType (`Bundle` for deleted, `OperationOutcome` for error files) and at most `max_line`
  bytes, and a gzip stream must not end early. An output or deleted file with a manifest `count`
  must hold exactly that many resources (an error file's mismatch is logged). Any of these is
  `ExportDamaged` (naming the file, and the line). Output of a type with `_typeFilter`s is
  filtered again for the token parameters the client can check (`bulk_filter`).

Logs name paths, types and counts only: no query strings, bodies or tokens.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3

from ips_screen.errors import ServerError
from ips_screen.fhir.auth import describe_origin, origin_of
from ips_screen.fhir.bulk_filter import Criterion
from ips_screen.fhir.bulk_http import BulkHttp, ExportDamaged, TransientError, failure
from ips_screen.fhir.bulk_lines import ACCEPT_ENCODING, DEFAULT_MAX_LINE, BodyDecoder, LineChecker
from ips_screen.fhir.client import FhirClient
from ips_screen.fhir.outcome import request_label
from ips_screen.fhir.retry import TRANSIENT_ERRORS

log = logging.getLogger("ips_screen.fhir.bulk")

CHUNK_SIZE = 1 << 16
KINDS = ("output", "deleted", "error")
_LINE_TYPE = {"deleted": "Bundle", "error": "OperationOutcome"}
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


@dataclass(frozen=True)
class FileEntry:
    """One file of a manifest; `line_type` is the resourceType every line must have."""

    kind: str
    line_type: str
    url: str
    count: int | None


def manifest_files(manifest: Mapping[str, Any], base: str, types: Sequence[str]) -> list[FileEntry]:
    """The output, deleted and error files of a manifest (relative URLs resolved on `base`).

    Output files of a type the request did not ask for are skipped (logged)."""
    entries: list[FileEntry] = []
    for kind in KINDS:
        items = manifest.get(kind) or []
        if not isinstance(items, list):
            raise ServerError(f"the export manifest's {kind} is not a list")
        for n, item in enumerate(items, 1):
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str) or not url:
                raise ServerError(f"the export manifest's {kind} entry {n} has no url")
            declared = item.get("type")
            line_type = _LINE_TYPE.get(kind, declared)
            if not isinstance(line_type, str) or not _TYPE_RE.match(line_type):
                raise ServerError(f"the export manifest's {kind} entry {n} has no valid type")
            if kind == "output" and types and line_type not in types:
                log.warning("skipping an output file of %s, a type not asked for", line_type)
                continue
            count = item.get("count") if isinstance(item.get("count"), int) else None
            entries.append(FileEntry(kind, line_type, urljoin(base, url), count))
    return entries


def file_auth(entries: Sequence[FileEntry], client: FhirClient, requires_token: object) -> bool:
    """Whether to send the client's credentials with file requests (they only ever go to the
    FHIR server's origin). Refuses a manifest that requires a token for files elsewhere."""
    for entry in entries:
        try:
            origin = origin_of(entry.url)
        except ValueError as exc:
            raise ServerError(
                f"the export manifest lists a {entry.kind} file URL that is not usable"
            ) from exc
        if requires_token is True and origin != client.origin:
            raise ServerError(
                f"the export manifest requires an access token for files on "
                f"{describe_origin(origin)}, which is not the FHIR server "
                f"({describe_origin(client.origin)}): refusing to send the token there"
            )
    return requires_token is not False


@dataclass
class Downloaded:
    """One downloaded file: its lines (resources) and what was kept after client filtering."""

    entry: FileEntry
    path: Path
    lines: int = 0
    kept: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # error-file outcomes that only inform

    def event(self, **extra: int) -> dict:
        kind, rtype, path = self.entry.kind, self.entry.line_type, str(self.path)
        return {"kind": kind, "type": rtype, "path": path, "resources": self.lines, **extra}


class Cancelled(ServerError):
    """A download stopped because another one failed (or the run was interrupted)."""


class _Stop(threading.Event):
    """Set when any download fails; `cause` is the first failure that was not a cancellation."""

    def __init__(self) -> None:
        super().__init__()
        self.cause: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.cause is None and not isinstance(exc, Cancelled):
                self.cause = exc
        self.set()


@dataclass
class Downloader:
    """Downloads a manifest's files into `files_dir`, `max_parallel` at a time; `filters` are
    `parse_type_filters` of the request's _typeFilter."""

    http: BulkHttp
    files_dir: Path
    send_auth: bool
    filters: dict[str, list[Criterion]]
    max_parallel: int
    notify: Callable[[str, dict], None]
    max_line: int = DEFAULT_MAX_LINE

    def run(self, entries: Sequence[FileEntry]) -> list[Downloaded]:
        """Every file, in manifest order; the first failure stops the others and is raised."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        for old in self.files_dir.iterdir():  # files/ belongs to the export: drop earlier files
            if old.is_file() and old.name.endswith((".ndjson", ".part")):
                old.unlink()
        stop = _Stop()
        results: list[Downloaded | None] = [None] * len(entries)
        with ThreadPoolExecutor(self.max_parallel, thread_name_prefix="bulk-download") as pool:
            futures: dict[Future[Downloaded], int] = {
                pool.submit(self._fetch, n, entry, stop): n for n, entry in enumerate(entries)
            }
            try:
                for done_count, future in enumerate(as_completed(futures), 1):
                    done = future.result()
                    results[futures[future]] = done
                    self.notify("file", done.event(done=done_count, total=len(entries)))
            except BaseException as exc:
                stop.set()
                for future in futures:
                    future.cancel()
                if isinstance(exc, Cancelled) and stop.cause is not None:
                    # Another file's failure stopped this one: report that failure, not the
                    # cancellation it caused (whichever thread finished first).
                    raise stop.cause from None
                raise
        return [done for done in results if done is not None]

    def _fetch(self, n: int, entry: FileEntry, stop: _Stop) -> Downloaded:
        path = self.files_dir / f"{entry.kind}-{n + 1:04d}-{entry.line_type}.ndjson"
        what = f"{request_label('GET', entry.url)} ({entry.kind} file)"
        criteria = self.filters.get(entry.line_type) if entry.kind == "output" else None

        def attempt() -> Downloaded:
            if stop.is_set():
                raise Cancelled(f"{what}: cancelled")
            done = Downloaded(entry, path)
            headers = {"Accept": "application/fhir+ndjson", "Accept-Encoding": ACCEPT_ENCODING}
            auth = self.send_auth
            with self.http.send(
                "GET", entry.url, headers=headers, stream=True, send_auth=auth
            ) as resp:
                transient = self.http.transient(resp, what)
                if transient is not None:
                    raise transient
                if not 200 <= resp.status_code < 300:
                    raise ServerError(failure(resp, what))
                lines = LineChecker(
                    entry.line_type,
                    lambda lineno: f"{path}:{lineno} (from {request_label('GET', entry.url)})",
                    criteria=criteria,
                    keep_errors=entry.kind == "error",
                    max_line=self.max_line,
                )
                decoder = BodyDecoder(resp.headers.get("Content-Encoding"), what)
                self._write(resp, path, decoder, lines, stop, what)
            done.lines, done.kept = lines.lines, lines.kept
            done.errors, done.notes = lines.errors, lines.notes
            return done

        try:
            done = self.http.retrying(what, attempt)
            if entry.count is not None and entry.count != done.lines:
                counted = (
                    f"{path} (from {request_label('GET', entry.url)}): the manifest's count is "
                    f"{entry.count}, the file holds {done.lines}"
                )
                if entry.kind != "error":  # data went missing: the export is damaged
                    path.unlink(missing_ok=True)
                    raise ExportDamaged(counted)
                log.warning("%s", counted)
        except BaseException as exc:
            # Stop the queued downloads from the worker itself: the main thread may see the
            # failure only after this worker has already started the next file.
            stop.fail(exc)
            raise
        if done.kept != done.lines:
            log.info(
                "%s %s file: dropped %d of %d resources failing the _typeFilter",
                entry.kind,
                entry.line_type,
                done.lines - done.kept,
                done.lines,
            )
        return done

    @staticmethod
    def _write(
        resp: requests.Response,
        path: Path,
        decoder: BodyDecoder,
        lines: LineChecker,
        stop: _Stop,
        what: str,
    ) -> None:
        part = path.with_name(path.name + ".part")
        try:
            with part.open("wb") as out:
                for chunk in _raw_chunks(resp):
                    if stop.is_set():
                        raise Cancelled(f"{what}: cancelled")
                    for data in decoder.feed(chunk):
                        out.write(lines.feed(data))
                decoder.finish()
                out.write(lines.finish())
            os.replace(part, path)
        except TRANSIENT_ERRORS as exc:
            part.unlink(missing_ok=True)
            raise TransientError(f"{what}: the download broke off ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            part.unlink(missing_ok=True)
            raise ServerError(f"{what}: the download failed ({type(exc).__name__})") from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise


def _raw_chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as sent (still content-encoded: `BodyDecoder` decodes it and notices a
    truncated stream, which urllib3's decoder does not), with urllib3's errors translated as
    `requests` translates them."""
    try:
        yield from resp.raw.stream(CHUNK_SIZE, decode_content=False)
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
