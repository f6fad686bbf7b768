"""Outputs and logs carry resource ids and clinical facts, never names, birth dates, addresses or
NHS numbers."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.sources.files import discover, iter_resources
from tests.support.paths import FIXTURES

NHS_NUMBER = "9434765919"  # a valid-format test number; added to one patient below


def personal_values(folder: Path) -> set[str]:
    """Names, birth dates, addresses and identifiers of every Patient in the input."""
    values: set[str] = set()
    for resource, _, _ in iter_resources(discover([folder])):
        if resource["resourceType"] != "Patient":
            continue
        if resource.get("birthDate"):
            values.add(resource["birthDate"])
        for name in resource.get("name", []):
            values.update(name.get("given", []))
            if name.get("family"):
                values.add(name["family"])
        for address in resource.get("address", []):
            values.update(address.get("line", []))
            if address.get("postalCode"):
                values.add(address["postalCode"])
        values.update(i["value"] for i in resource.get("identifier", []) if i.get("value"))
    return values


@pytest.mark.slow
def test_outputs_and_logs_hold_no_personal_data(tmp_path: Path, capsys, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted((FIXTURES / "patients").glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                resource["address"] = [{"line": ["12 Fictional Road"], "postalCode": "ZZ9 9ZZ"}]
                resource["identifier"] = [
                    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_NUMBER}
                ]
        (data / path.name).write_bytes(orjson.dumps(bundle))
    secrets = personal_values(data)
    assert NHS_NUMBER in secrets and "Fictional" not in secrets  # the check sees what it should
    assert any(len(v) == 10 and v[4] == "-" for v in secrets)  # birth dates are among them

    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG, logger="ips_screen"):
        assert main(["-v", "screen", str(data), "--as-of", "2026-11-26", "--out", str(out)]) == 0
        for pid in ("fx-01", "fx-04", "fx-35"):
            main(["explain", str(data), "--patient", pid, "--as-of", "2026-11-26"])
    stdout, stderr = capsys.readouterr()
    texts = {name.name: name.read_text() for name in out.iterdir()}
    texts["stdout"], texts["stderr"], texts["log"] = stdout, stderr, caplog.text
    for where, text in texts.items():
        leaked = sorted(v for v in secrets if len(v) > 3 and v in text)
        assert not leaked, f"{where} contains personal data: {leaked}"
