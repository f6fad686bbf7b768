"""Fixture patients with personal data added, and the personal values to look for in outputs and
logs (the leak tests: tests/e2e/test_no_personal_data.py, tests/spark/)."""

from __future__ import annotations

from pathlib import Path

import orjson

from ips_screen.sources.files import discover, iter_resources
from tests.support.paths import FIXTURES

NHS_NUMBER = "9434765919"  # a valid-format test number; added to every fixture patient


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


def fixtures_with_personal_data(data: Path) -> set[str]:
    """The fixture patients, each given an address and an NHS number, written into `data`
    (created here); their personal values."""
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
    return personal_values(data)


def leaks(texts: dict[str, str], secrets: set[str]) -> dict[str, list[str]]:
    """The personal values (longer than 3 characters) found in each text, by where."""
    found = {
        where: sorted(v for v in secrets if len(v) > 3 and v in text)
        for where, text in texts.items()
    }
    return {where: values for where, values in found.items() if values}
