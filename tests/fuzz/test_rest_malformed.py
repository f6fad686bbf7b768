"""Malformed resources read from a FHIR server by search (`screen URL --patient-id`): a fake server
(`responses`) answers every search; the screen completes, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import responses

from ips_screen.cli.main import main

BASE = "https://fhir.example.org/r4"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.mark.parametrize("bad_id", [["p"], {"id": "p"}, 7, None])
def test_a_patient_whose_id_is_not_a_string(capsys, tmp_path: Path, bad_id: object):
    def search(request) -> tuple[int, dict, bytes]:
        rtype = urlsplit(request.url).path.rsplit("/", 1)[-1]
        entries = []
        if rtype == "Patient":
            entries = [{"resource": {"resourceType": "Patient", "id": bad_id}}]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return 200, FHIR_JSON, orjson.dumps(bundle)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        statement = {"resourceType": "CapabilityStatement", "status": "active", "rest": []}
        mock.get(f"{BASE}/metadata", json=statement)
        mock.add_callback(responses.GET, re.compile(rf"{re.escape(BASE)}/[A-Z][A-Za-z]+"), search)
        code = main(
            ["screen", BASE, "--patient-id", "p", "--as-of", "2026-11-26", "--out", str(tmp_path)]
        )
    err = capsys.readouterr().err
    assert code == 0, err
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["patients"] == 0
