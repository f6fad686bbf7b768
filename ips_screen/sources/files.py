"""Find FHIR input files and stream the resources in them, with a location for every problem.

Accepted files: ``*.json`` (a Bundle of type collection, transaction, batch, searchset or
document, or a single resource), ``*.ndjson`` and ``*.ndjson.gz`` (one resource per line, as a
FHIR Bulk Data export writes them). NDJSON is streamed line by line; a JSON file is parsed whole.

Every resource comes with ``where``, the place a person would look: ``path:line`` for NDJSON,
``path`` for a single-resource JSON file, ``path: entry N`` for the N-th entry of a Bundle (the
first entry is 1; ``entry 3.2`` is entry 2 of a Bundle nested in entry 3). A problem either raises
`InputError` ("<where>: <problem>") or, with ``ReadReport(skip_invalid=True)``, is recorded in the
report and reading goes on.

An NDJSON line longer than ``max_line`` bytes (default 64 MiB) is an `InputError` naming the file
and line, whatever ``skip_invalid`` says: it is refused after reading ``max_line`` bytes of it,
never read whole.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterable, Iterator
from functools import cache, partial
from pathlib import Path

import orjson

from ips_screen.errors import InputError, UserError
from ips_screen.facts.extract import Resolver
from ips_screen.limits import DEFAULT_MAX_LINE as DEFAULT_MAX_LINE  # re-exported
from ips_screen.reading import Item, ReadReport
from ips_screen.sources.resource_types import R4_RESOURCE_TYPES

log = logging.getLogger("ips_screen.sources")

BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset", "document")
MAX_SKIPPED = 1_000
_BOM = b"\xef\xbb\xbf"
_SUPPORTED = "*.json, *.ndjson or *.ndjson.gz"


def file_kind(path: Path) -> str | None:
    """ "ndjson.gz", "ndjson" or "json" by the file name; None for anything else."""
    name = path.name.lower()
    for kind in ("ndjson.gz", "ndjson", "json"):
        if name.endswith("." + kind):
            return kind
    return None


# Metadata that lives beside Bulk Data NDJSON files: a Bulk export manifest, never FHIR data.
NOT_DATA = frozenset({"manifest.json"})


def discover(
    paths: Iterable[Path | str],
    report: ReadReport | None = None,
    *,
    skip: Iterable[Path | str] = (),
    empty_ok: bool = False,
) -> list[Path]:
    """The input files named by `paths` (files, or folders searched recursively in sorted order).

    Other files inside folders (and Bulk export ``manifest.json`` files) are ignored and counted
    in ``report.files_ignored``; a path given
    explicitly must exist and be a supported file. Each file is listed once, in the order found.
    Nothing inside the folders `skip` is read (the tool's own output folders: a run's
    decisions.ndjson and summary.json are not patient data, and its proposals read back would
    count as the tool's open proposals); they are not counted either. Folders with
    no input file are an `InputError` unless `empty_ok` (a folder of changes: none tonight).
    """
    found: list[Path] = []
    seen: set[Path] = set()
    ignored = 0
    given = [Path(p) for p in paths]
    outputs = [Path(p).resolve() for p in skip]
    skipped: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    @cache
    def output_of(folder: Path) -> Path | None:
        """The output folder `folder` is in (None: not in one)."""
        where = folder.resolve()
        return next((out for out in outputs if where.is_relative_to(out)), None)

    for path in given:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if not child.is_file():
                    continue
                if outputs and (out := output_of(child.parent)) is not None:
                    skipped.add(out)
                    continue
                if file_kind(child) is None or child.name in NOT_DATA:
                    ignored += 1
                else:
                    add(child)
        elif not path.exists():
            raise InputError(f"{path}: no such file or folder")
        elif file_kind(path) is None:
            raise InputError(f"{path}: unsupported file type (expected {_SUPPORTED})")
        else:
            add(path)
    for out in sorted(skipped):
        log.info("not read: %s, an output folder of this tool inside the input", out)
    if report is not None:
        report.files_ignored += ignored
    if not found and not empty_ok:
        names = ", ".join(str(p) for p in given) or "(no paths given)"
        extra = f"; {ignored} other file(s) ignored" if ignored else ""
        extra += "".join(f"; {out}, an output folder, not read" for out in sorted(skipped))
        raise InputError(f"{names}: no FHIR input files ({_SUPPORTED}) found{extra}")
    return found


def check_output_folder(sources: Iterable[Path | str], out: Path | str) -> None:
    """Refuse an output folder that is an input folder or holds one (`UserError`): the next run
    would find its outputs among the input, and could not tell them apart from the user's files.
    An output folder inside an input folder is fine (`discover` leaves it out)."""
    where = Path(out).resolve()
    for source in sources:
        folder = Path(source)
        if folder.is_dir() and (data := folder.resolve()).is_relative_to(where):
            inside = "is" if data == where else "holds"
            raise UserError(
                f"--out {out} {inside} the input folder {source}: write the outputs to a folder "
                f"of their own (e.g. {folder / 'out'}), or they would be read as input next time"
            )


def iter_resources(
    files: Iterable[Path],
    report: ReadReport | None = None,
    *,
    max_line: int = DEFAULT_MAX_LINE,
) -> Iterator[Item]:
    """Stream ``(resource, where, resolve)`` from each file; Bundles are flattened.

    ``resolve`` maps the ``urn:uuid:``/``urn:oid:`` fullUrls of the resource's Bundle to
    "Type/id" (None outside Bundles). Resources are checked to be FHIR R4 resources, nothing more.
    """
    reader = Reader(report if report is not None else ReadReport(), max_line)
    for path in files:
        if file_kind(path) == "json":
            yield from reader.json_file(path)
        else:
            yield from reader.ndjson_file(path)


def resources_of(value: object, where: str, report: ReadReport | None = None) -> Iterator[Item]:
    """Check one parsed JSON value and yield its resource(s), flattening a Bundle."""
    yield from Reader(report if report is not None else ReadReport()).value(value, where)


class Reader:
    def __init__(self, report: ReadReport, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.report = report
        self.max_line = max_line

    def ndjson_file(self, path: Path) -> Iterator[Item]:
        gz = file_kind(path) == "ndjson.gz"
        lineno = 0
        name = str(path)
        try:
            with gzip.open(path, "rb") if gz else path.open("rb") as lines:
                self.report.files_read += 1
                limit = self.max_line + 1
                for lineno, line in enumerate(iter(partial(lines.readline, limit), b""), 1):
                    if len(line) > self.max_line and not line.endswith(b"\n"):
                        raise InputError(
                            f"{name}:{lineno}: a line longer than {self.max_line} bytes "
                            "(the line size cap)"
                        )
                    if lineno == 1 and line.startswith(_BOM):
                        line = line[3:]
                    if not line or line.isspace():
                        continue
                    yield from self.line(line, name, lineno)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            what = "cannot read the file"
            if gz and not isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                what = "not a readable gzip file"
            self.report.problem(f"{path}:{lineno + 1}", f"{what} ({_os_error(exc)})")

    def line(
        self, line: bytes, name: str, lineno: int, *, first: bool | None = None
    ) -> Iterator[Item]:
        """Parse and check one NDJSON line (not blank, BOM removed); `name:lineno` locates it,
        `first` says whether it is the file's first line (default: `lineno` is 1)."""
        where = f"{name}:{lineno}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            hint = ""
            if (lineno == 1 if first is None else first) and line.strip() in (b"{", b"["):
                hint = "; is this a JSON file named .ndjson?"
            self.report.problem(where, f"not valid JSON ({_json_error(exc)}{hint})")
            return
        # The common case inline (a known, non-Bundle resource): no nested generator.
        rtype = value.get("resourceType") if type(value) is dict else None
        if type(rtype) is str and rtype in R4_RESOURCE_TYPES and rtype != "Bundle":
            self.report.resources_read += 1
            self.report.by_type[rtype] += 1
            yield value, where, None
        else:
            yield from self.value(value, where)

    def json_file(self, path: Path) -> Iterator[Item]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.report.problem(str(path), f"cannot read the file ({_os_error(exc)})")
            return
        yield from self.json_data(data, str(path))

    def json_data(self, data: bytes, name: str) -> Iterator[Item]:
        """A JSON file's bytes (a resource or a Bundle), read elsewhere; `name` locates problems."""
        self.report.files_read += 1
        if data.startswith(_BOM):
            data = data[3:]
        if not data.strip():
            self.report.problem(f"{name}:1", "empty file (expected a FHIR resource or Bundle)")
            return
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            hint = ""
            if exc.msg.startswith("unexpected content after document"):
                hint = "; several JSON values: is this an NDJSON file named .json?"
            problem = f"not valid JSON ({_json_error(exc)}{hint})"
            self.report.problem(f"{name}:{exc.lineno}", problem)
            return
        del data
        yield from self.value(value, name)

    def value(self, value: object, where: str) -> Iterator[Item]:
        rtype = self._check(value, where)
        if rtype is None:
            return
        assert isinstance(value, dict)
        if rtype != "Bundle":
            self._count(rtype)
            yield value, where, None
            return
        urls: dict[str, str] = {}
        _index_full_urls(value, urls)
        yield from self._bundle(value, where, "", urls.get if urls else None)

    def _bundle(
        self, bundle: dict, base: str, prefix: str, resolve: Resolver | None
    ) -> Iterator[Item]:
        where = f"{base}: entry {prefix[:-1]}" if prefix else base
        btype = bundle.get("type")
        if btype not in BUNDLE_TYPES:
            self.report.problem(
                where,
                f"Bundle of type {btype!r} is not supported (expected {', '.join(BUNDLE_TYPES)})",
            )
            return
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            self.report.problem(where, "Bundle.entry is not a list")
            return
        for n, entry in enumerate(entries, 1):
            here = f"{base}: entry {prefix}{n}"
            if not isinstance(entry, dict):
                self.report.problem(here, "a Bundle entry must be a JSON object")
                continue
            resource = entry.get("resource")
            if resource is None:
                continue
            search = entry.get("search")
            if isinstance(search, dict) and search.get("mode") == "outcome":
                continue
            rtype = self._check(resource, here)
            if rtype == "Bundle":
                yield from self._bundle(resource, base, f"{prefix}{n}.", resolve)
            elif rtype is not None:
                self._count(rtype)
                yield resource, here, resolve

    def _check(self, value: object, where: str) -> str | None:
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        if not isinstance(rtype, str):
            self.report.problem(where, f"not a FHIR resource ({_describe(value)})")
            return None
        if rtype not in R4_RESOURCE_TYPES:
            self.report.problem(where, f"unknown resourceType {rtype!r} (not a FHIR R4 resource)")
            return None
        return rtype

    def _count(self, rtype: str) -> None:
        self.report.resources_read += 1
        self.report.by_type[rtype] += 1


def _index_full_urls(bundle: dict, urls: dict[str, str]) -> None:
    """Give id-less entry resources their id from fullUrl; map urn: fullUrls to "Type/id"."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            continue
        full_url = entry.get("fullUrl")
        full_url = full_url.strip() if isinstance(full_url, str) else ""
        if resource.get("id") is None and full_url:
            found = _id_from_full_url(full_url, rtype)
            if found:
                resource["id"] = found
        if full_url.startswith("urn:") and resource.get("id") is not None:
            urls[full_url] = f"{rtype}/{resource['id']}"
        if rtype == "Bundle":
            _index_full_urls(resource, urls)


def _id_from_full_url(full_url: str, rtype: str) -> str | None:
    if full_url.startswith(("urn:uuid:", "urn:oid:")):
        return full_url.split(":", 2)[2] or None
    parts = full_url.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
        return parts[-1]
    return None


def _json_error(exc: orjson.JSONDecodeError) -> str:
    return f"{exc.msg} at column {exc.colno}"


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe(value: object) -> str:
    if isinstance(value, dict):
        if "resourceType" not in value:
            return "a JSON object without resourceType"
        return "resourceType is not a string"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool) or value is None:
        return f"JSON {orjson.dumps(value).decode()}"
    return "a JSON number"
