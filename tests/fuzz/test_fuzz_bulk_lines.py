"""Fuzz the Bulk Data download's line reader: a fake exporter (`responses`) serves output, deleted
and error files made from real records, then broken (tests/fuzz/inputs.py), in chunks of any size,
plain or gzip-encoded. The export must either complete or fail with a `ServerError` (a user
error: one line, exit 5 or a failed night), never anything else.

IPS_SCREEN_FUZZ_EXAMPLES sets the number of examples (see test_fuzz_readers.py).
"""

from __future__ import annotations

import copy
import gzip
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from ips_screen.errors import ServerError
from ips_screen.fhir import bulk_download
from ips_screen.fhir.auth import FhirAuth
from ips_screen.fhir.bulk import ExportRequest, export
from ips_screen.fhir.client import FhirClient
from tests.fuzz.fuzz_settings import FUZZ, SCRATCH
from tests.fuzz.inputs import byte_mutation, structural_mutation
from tests.fuzz.seeds import fixture_seeds

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/bulkstatus/job-1"
FILTERS = (
    "Condition?code=http://snomed.info/sct|82423001,http://snomed.info/sct|",
    "Condition?clinical-status=active&verification-status=confirmed",
    "Observation?code=67875-5,http://loinc.org|93025-5",
)
TYPES = ("Patient", "Condition", "Observation", "Task")
KINDS = {"output": None, "deleted": "Bundle", "error": "OperationOutcome"}


def _deleted(ref: str) -> dict:
    entry = {"request": {"method": "DELETE", "url": ref}}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}


def _outcome(text: str) -> dict:
    issue = {"severity": "error", "code": "processing", "diagnostics": text}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@st.composite
def bulk_files(draw: st.DrawFn) -> tuple[str, str, bytes, bool, int]:
    """(kind, type, body, gzip-encoded, chunk size) of one export file."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    resources = [e["resource"] for seed in fixture_seeds() for e in seed]
    if kind == "output":
        rtype = draw(st.sampled_from(TYPES))
        lines = [r for r in resources if r["resourceType"] == rtype]
    elif kind == "deleted":
        rtype, lines = "Bundle", [_deleted(f"{r['resourceType']}/{r['id']}") for r in resources]
    else:
        rtype, lines = (
            "OperationOutcome",
            [_outcome(f"{r['resourceType']} failed") for r in resources],
        )
    start = draw(st.integers(0, len(lines) - 1))
    document = copy.deepcopy(lines[start : start + draw(st.integers(1, 6))])
    for _ in range(draw(st.integers(0, 3))):
        draw(structural_mutation(document))
    body = b"".join(orjson.dumps(line) + b"\n" for line in document)
    for _ in range(draw(st.integers(0, 2))):
        body = draw(byte_mutation(body))
    encoded = draw(st.booleans())
    if encoded:
        body = gzip.compress(body, mtime=0)
        if draw(st.integers(0, 3)) == 0:
            body = draw(byte_mutation(body))
    return kind, rtype, body, encoded, draw(st.integers(1, 70))


def check_export(kind: str, rtype: str, body: bytes, encoded: bool, chunk: int) -> None:
    """The property: the export completes or raises ServerError."""
    url = f"{BASE}/files/f.ndjson"
    manifest = {
        "transactionTime": "2026-11-26T09:00:00Z",
        "request": f"{BASE}/$export",
        "requiresAccessToken": True,
        "output": [],
        "error": [],
        kind: [{"type": rtype, "url": url}],
    }
    headers = {"Content-Encoding": "gzip"} if encoded else {}
    work = Path(tempfile.mkdtemp(prefix="ips-fuzz-bulk-", dir=SCRATCH))
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
            FhirClient(BASE, auth=FhirAuth(BASE), sleep=_no_sleep, clock=lambda: 0.0) as client,
        ):
            patch.setattr(bulk_download, "CHUNK_SIZE", chunk)
            mock.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
            mock.get(STATUS, json=manifest)
            mock.delete(STATUS, status=202)
            mock.get(url, body=body, headers=headers)
            request = ExportRequest(types=TYPES, type_filters=FILTERS)
            try:
                export(client, request, work, sleep=_no_sleep, clock=lambda: 0.0)
            except ServerError as exc:
                assert str(exc) and "\n" not in str(exc)
    finally:
        shutil.rmtree(work)


def _no_sleep(seconds: float) -> None:
    """Retries of a broken download are immediate here."""


@FUZZ
@given(bulk_files())
def test_fuzzed_bulk_files_complete_or_fail_as_server_errors(file):
    check_export(*file)


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType":"Condition","id":"c","code":' + b"[" * 1000 + b"]" * 1000 + b"}\n",
        b'{"resourceType":"Condition","id":"c","code":{"coding":' + b"[" * 1000 + b"]" * 1000
        + b"}}\n",
    ],
    ids=["deep-code", "deep-coding"],
)  # fmt: skip
def test_deeply_nested_codes_in_a_filtered_file(body: bytes):
    check_export("output", "Condition", body, False, 65536)
