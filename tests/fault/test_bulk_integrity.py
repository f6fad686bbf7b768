"""Bulk export integrity with a fake exporter (`responses`): damaged files, the line cap and a
linear line buffer, the server's words after retries, unsupported `_type`, POST kick-off and
paged manifests. Helpers and fixtures come from tests/support/bulk_responses.py."""

from __future__ import annotations

import gzip
import io
import zlib
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from ips_screen.errors import ServerError
from ips_screen.fhir import bulk_lines
from ips_screen.fhir.bulk import STATE_FILE, ExportDamaged, ExportRequest, ExportUnsupported
from ips_screen.fhir.bulk_lines import LineChecker
from tests.support import bulk_responses
from tests.support.bulk_responses import (
    BASE,
    KICKOFF,
    OTHER,
    STATUS,
    calls,
    condition,
    done,
    kickoff,
    manifest,
    ndjson,
    outcome,
    patient,
    run,
    simple_export,
)

# the fake exporter's fixtures (`mock` is tests/fault/conftest.py's)
fake, auth, client = bulk_responses.fake, bulk_responses.auth, bulk_responses.client

TYPES = ("Patient", "Condition", "Task")


def statement(*types: str, **resource_extra: dict) -> dict:
    resources = [{"type": t, **resource_extra.get(t, {})} for t in types]
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [{"mode": "server", "resource": resources, "operation": [{"name": "export"}]}],
    }


# -- 1. damaged files ----------------------------------------------------------------------------


def test_a_truncated_gzip_stream_is_a_damaged_export(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", None)))
    packer = zlib.compressobj(wbits=31)  # gzip; flushed after the first line
    cut = packer.compress(ndjson(patient("p1"))) + packer.flush(zlib.Z_FULL_FLUSH)
    assert zlib.decompressobj(31).decompress(cut) == ndjson(patient("p1"))  # one whole line
    mock.get(f"{BASE}/files/p.ndjson", body=cut, headers={"Content-Encoding": "gzip"})
    with pytest.raises(ExportDamaged, match="truncated"):
        run(client, fake, tmp_path)
    assert not list((tmp_path / "files").iterdir())
    assert not (tmp_path / STATE_FILE).exists()


def test_a_line_of_another_type_is_a_damaged_export(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1"), condition("c1")))
    with pytest.raises(ExportDamaged, match=r"Patient.ndjson:2 .*got 'Condition'"):
        run(client, fake, tmp_path)


def test_a_short_deleted_file_is_damaged_a_short_error_file_is_not(mock, client, fake, tmp_path):
    gone = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    kickoff(mock)
    deleted = [{"type": "Bundle", "url": f"{BASE}/files/d.ndjson", "count": 2}]
    done(mock, manifest(deleted=deleted))
    mock.get(f"{BASE}/files/d.ndjson", body=ndjson(gone))
    with pytest.raises(ExportDamaged, match="the manifest's count is 2, the file holds 1"):
        run(client, fake, tmp_path)

    errors = [{"type": "OperationOutcome", "url": f"{BASE}/files/e.ndjson", "count": 2}]
    mock.replace("GET", STATUS, json=manifest(error=errors))
    mock.get(f"{BASE}/files/e.ndjson", body=ndjson(outcome("Task/t1 could not be read")))
    assert run(client, fake, tmp_path / "again").errors == [
        "error processing: Task/t1 could not be read"
    ]


def test_gzip_with_several_members_and_small_steps_is_whole(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 3)))
    body = gzip.compress(ndjson(patient("p1"))) + gzip.compress(
        ndjson(patient("p2"), patient("p3"))
    )
    mock.get(f"{BASE}/files/p.ndjson", body=body, headers={"Content-Encoding": "gzip"})
    result = run(client, fake, tmp_path)
    assert len(result.files[0][1].read_bytes().splitlines()) == 3


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_encoded_files_zlib_or_raw(mock, client, fake, tmp_path, wbits):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 2)))
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(ndjson(patient("p1"), patient("p2"))) + packer.flush()
    mock.get(f"{BASE}/files/p.ndjson", body=body, headers={"Content-Encoding": "deflate"})
    assert len(run(client, fake, tmp_path).files[0][1].read_bytes().splitlines()) == 2


# -- 12. the line cap, and a linear buffer -------------------------------------------------------


class _Endless(io.RawIOBase):
    """A body of one endless line: counts what was read from it."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = len(buffer)
        buffer[:size] = b"x" * size
        self.served += size
        return size


def test_a_line_over_the_cap_stops_the_download_early(mock, client, fake, tmp_path):
    kickoff(mock)
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    endless = _Endless()
    mock.get(f"{BASE}/files/p.ndjson", body=io.BufferedReader(endless))
    cap = 1 << 20
    with pytest.raises(ExportDamaged, match=r"Patient.ndjson:1 .*longer than 1048576 bytes"):
        run(client, fake, tmp_path, max_line=cap)
    assert endless.served < cap + (1 << 18)  # refused once over the cap, not read on
    assert not list((tmp_path / "files").iterdir())


class _CountingBytes(bytes):
    """A chunk that counts the bytes its searches look at."""

    scanned = 0

    def find(self, sub, start=0, end=None):  # type: ignore[no-untyped-def, override]
        _CountingBytes.scanned += len(self) - (start or 0)
        return bytes.find(self, sub, start, len(self) if end is None else end)

    def rfind(self, sub, start=0, end=None):  # type: ignore[no-untyped-def, override]
        _CountingBytes.scanned += len(self) - (start or 0)
        return bytes.rfind(self, sub, start, len(self) if end is None else end)


class _CountingBuffer(bytearray):
    """The checker's pending-line buffer, counting the bytes its searches look at."""

    def find(self, sub, start=0, end=None):  # type: ignore[no-untyped-def, override]
        _CountingBytes.scanned += len(self) - (start or 0)
        return bytearray.find(self, sub, start, len(self) if end is None else end)

    def rfind(self, sub, start=0, end=None):  # type: ignore[no-untyped-def, override]
        _CountingBytes.scanned += len(self) - (start or 0)
        return bytearray.rfind(self, sub, start, len(self) if end is None else end)


def test_a_long_line_over_many_chunks_is_scanned_once(monkeypatch):
    """Linear, by counting: a 4 MiB line in 1 KiB chunks (the old buffer searched everything it
    held on every chunk: about 8 GiB of searching here)."""
    monkeypatch.setattr(bulk_lines, "bytearray", _CountingBuffer, raising=False)
    _CountingBytes.scanned = 0
    line = orjson.dumps({"resourceType": "Patient", "id": "p1", "text": "x" * (4 << 20)}) + b"\n"
    checker = LineChecker("Patient", lambda n: f"f.ndjson:{n}", max_line=8 << 20)
    chunk = 1024
    kept = b"".join(
        checker.feed(_CountingBytes(line[i : i + chunk])) for i in range(0, len(line), chunk)
    )
    kept += checker.finish()
    assert kept == line and checker.lines == 1
    assert _CountingBytes.scanned <= 2 * len(line)


# -- 4. the server's words survive the last retry ------------------------------------------------


def test_kick_off_failures_keep_the_outcome_text_after_the_last_retry(mock, client, fake, tmp_path):
    for _ in range(5):
        mock.get(KICKOFF, status=500, json=outcome("File generation failed", "exception"))
    with pytest.raises(ServerError) as caught:
        run(client, fake, tmp_path)
    message = str(caught.value)
    assert "File generation failed" in message and "gave up after 5 attempts" in message


# -- 2. unsupported _type ------------------------------------------------------------------------


def _refuse_types(mock, body: dict, text: str = "Resource type Task is not supported") -> None:
    mock.get(f"{BASE}/metadata", json=body)
    mock.get(KICKOFF, status=400, json=outcome(text, "not-supported"))


def _second_kick_off_types(mock) -> list[str]:
    kicks = calls(mock, "GET", KICKOFF)
    return [parse_qs(urlsplit(c.request.url).query)["_type"][0] for c in kicks]


def test_types_the_capability_statement_leaves_out_are_not_asked_again(
    mock, client, fake, tmp_path
):
    _refuse_types(mock, statement("Patient", "Condition"), "some types are not supported")
    simple_export(mock)
    result = run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert result.unsupported_types == ("Task",)
    assert _second_kick_off_types(mock) == ["Patient,Condition,Task", "Patient,Condition"]
    assert result.files and result.files[0][0] == "Patient"


def test_types_marked_not_supported_for_export(mock, client, fake, tmp_path):
    marked = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/uv/bulkdata/Extension/operation-not-supported",
                "valueCanonical": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
            }
        ]
    }
    _refuse_types(mock, statement(*TYPES, Task=marked), "unsupported")
    simple_export(mock)
    result = run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert result.unsupported_types == ("Task",)


def test_types_named_by_the_outcome_when_the_statement_says_nothing(mock, client, fake, tmp_path):
    _refuse_types(mock, statement())
    simple_export(mock)
    result = run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert result.unsupported_types == ("Task",)


def test_without_patient_the_export_is_unsupported(mock, client, fake, tmp_path):
    _refuse_types(mock, statement("Condition", "Task"), "no Patient export")
    with pytest.raises(ExportUnsupported, match="cannot export Patient"):
        run(client, fake, tmp_path, ExportRequest(types=TYPES))


def test_none_of_the_types_exportable_is_unsupported(mock, client, fake, tmp_path):
    _refuse_types(mock, statement("Patient"), "no such types")
    with pytest.raises(ExportUnsupported, match="none of the types asked"):
        run(client, fake, tmp_path, ExportRequest(types=("Condition", "Task")))
    assert len(calls(mock, "GET", KICKOFF)) == 1


def test_a_refusal_the_types_do_not_explain_keeps_the_servers_words(mock, client, fake, tmp_path):
    mock.get(f"{BASE}/metadata", json=statement(*TYPES))
    mock.get(KICKOFF, status=400, json=outcome("_since is in the future", "invalid"))
    with pytest.raises(ServerError, match="_since is in the future"):
        run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert len(calls(mock, "GET", KICKOFF)) == 1


def test_a_resumed_job_remembers_the_types_left_out(mock, client, fake, tmp_path):
    _refuse_types(mock, statement("Patient", "Condition"))
    kickoff(mock)
    mock.get(STATUS, status=503)  # the polls give up: the job is kept, to be resumed
    with pytest.raises(ServerError):
        run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert orjson.loads((tmp_path / STATE_FILE).read_bytes())["unsupported"] == ["Task"]
    mock.replace("GET", STATUS, json=manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    mock.delete(STATUS, status=202)
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    result = run(client, fake, tmp_path, ExportRequest(types=TYPES))
    assert result.resumed and result.unsupported_types == ("Task",)


# -- 5. POST kick-off and paged manifests --------------------------------------------------------


def test_post_kick_off_sends_a_parameters_body(mock, client, fake, tmp_path):
    mock.post(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(f"{BASE}/files/p.ndjson", body=ndjson(patient("p1")))
    done(mock, manifest(("Patient", f"{BASE}/files/p.ndjson", 1)))
    request = ExportRequest(types=("Patient", "Condition"), since="2029-12-31T00:00:00Z")
    run(client, fake, tmp_path, request, kickoff="post")
    sent = calls(mock, "POST", KICKOFF)[0].request
    assert sent.headers["Content-Type"] == "application/fhir+json"
    assert "respond-async" in sent.headers["Prefer"]
    assert orjson.loads(sent.body) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "_type", "valueString": "Patient"},
            {"name": "_type", "valueString": "Condition"},
            {"name": "_since", "valueInstant": "2029-12-31T00:00:00Z"},
        ],
    }
    assert not calls(mock, "GET", KICKOFF)


@pytest.mark.parametrize("status", [404, 405, 501])
def test_post_kick_off_falls_back_to_get(mock, client, fake, tmp_path, status):
    mock.post(KICKOFF, status=status, json=outcome("POST not allowed", "not-supported"))
    simple_export(mock)
    result = run(client, fake, tmp_path, kickoff="post")
    assert len(calls(mock, "GET", KICKOFF)) == 1 and result.files


def test_a_paged_manifest_is_followed_for_files_on_every_page(mock, client, fake, tmp_path):
    kickoff(mock)
    page2 = f"{BASE}/bulkstatus/job-1/page/2"
    page3 = f"{BASE}/bulkstatus/job-1/page/3"
    first = manifest(("Patient", f"{BASE}/files/p1.ndjson", 1))
    first["link"] = [{"relation": "next", "url": page2}]
    second = manifest(("Patient", "../../../files/p2.ndjson", 1))  # relative to its own page
    second["link"] = [{"relation": "next", "url": page3}]
    third = manifest(("Condition", f"{BASE}/files/c.ndjson", 1))
    done(mock, first)
    mock.get(page2, json=second)
    mock.get(page3, json=third)
    mock.get(f"{BASE}/files/p1.ndjson", body=ndjson(patient("p1")))
    mock.get(f"{BASE}/files/p2.ndjson", body=ndjson(patient("p2")))
    mock.get(f"{BASE}/files/c.ndjson", body=ndjson(condition("c1")))
    result = run(client, fake, tmp_path)
    assert result.pages == 3
    assert [t for t, _ in result.files] == ["Patient", "Patient", "Condition"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"{OTHER}/page/2", "leaves the server"),
        (STATUS, "points back to an earlier page"),
    ],
)
def test_a_next_link_elsewhere_or_in_a_loop_is_refused(mock, client, fake, tmp_path, url, problem):
    kickoff(mock)
    first = manifest(("Patient", f"{BASE}/files/p1.ndjson", 1))
    first["link"] = [{"relation": "next", "url": url}]
    done(mock, first)
    with pytest.raises(ServerError, match=problem):
        run(client, fake, tmp_path)
    assert not calls(mock, "GET", OTHER)


def test_manifest_pages_are_bounded(mock, client, fake, tmp_path):
    kickoff(mock)
    first = manifest()
    first["link"] = [{"relation": "next", "url": f"{BASE}/pages/1"}]
    done(mock, first)
    for n in range(1, 5):
        page = manifest()
        page["link"] = [{"relation": "next", "url": f"{BASE}/pages/{n + 1}"}]
        mock.get(f"{BASE}/pages/{n}", json=page)
    with pytest.raises(ServerError, match="more than 3 pages"):
        run(client, fake, tmp_path, max_manifest_pages=3)


def test_the_failure_is_reported_not_the_cancellation_it_caused(tmp_path, monkeypatch):
    """A damaged file stops the other downloads; whichever thread finishes first, the error the
    run reports is the damage (exit 9 for the nightly job), never "cancelled" (exit 5)."""
    import threading

    from ips_screen.fhir.bulk_download import Cancelled, Downloader, FileEntry

    second_cancelled = threading.Event()

    def fetch(self, n, entry, stop):
        if n == 0:
            stop.fail(ExportDamaged("output-0001-Condition.ndjson: the manifest's count is 3"))
            second_cancelled.wait(5)  # let the cancellation reach the main thread first
            raise ExportDamaged("output-0001-Condition.ndjson: the manifest's count is 3")
        stop.wait(5)
        second_cancelled.set()
        raise Cancelled("GET /files/Patient.ndjson (output file): cancelled")

    monkeypatch.setattr(Downloader, "_fetch", fetch)
    entries = [
        FileEntry("output", t, f"https://fhir.example.org/r4/files/{t}.ndjson", None)
        for t in ("Condition", "Patient")
    ]
    downloader = Downloader(None, tmp_path, False, {}, 2, lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(ExportDamaged, match="count is 3"):
        downloader.run(entries)
