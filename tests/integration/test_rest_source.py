"""Reading a real FHIR server (ips_screen.sources.fhir_rest) gives the decisions the files give.

Each data set is loaded into its own server (a pristine one, since the whole population is read):
a few inline patients, and the project's fixtures (fhir_fixtures/, when present). Every collection
Bundle becomes a transaction of PUT Type/id entries, so ids are kept.

One difference is by design of FHIR servers: a server stamps `meta.lastUpdated` itself, and a
ServiceRequest's change date (when a revoked proposal was declined) is its lastUpdated. So the
expected decisions come from the files with each ServiceRequest's lastUpdated set to the server's
("as the server holds them"); a test checks that only patients with a revoked ServiceRequest
differ from the untouched files.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.errors import ServerError
from ips_screen.facts.extract import RELEVANT_TYPES
from ips_screen.fhir.client import FhirClient
from ips_screen.pipeline import decide_all
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import collect, discover, fhir_rest
from ips_screen.sources.fhir_rest import read_server
from ips_screen.sources.population import Population
from tests.fhir_support import running_test_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fhir_fixtures"
AS_OF = date(2026, 11, 26)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
IPS_SYSTEM = "https://ips-screen.org/fhir/CodeSystem/ips-screen"


# -- inline data ----------------------------------------------------------------------------------


def _concept(code: str, system: str = SNOMED) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _patient(pid: str, birth: str = "1980-02-03") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": birth,
        "name": [{"family": "Inline", "given": ["Test"]}],
        "generalPractitioner": [{"reference": "Practitioner/rest-gp"}],
    }


def _condition(rid: str, pid: str, code: str, onset: str = "2025-01-15") -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": _concept(
            "active", "http://terminology.hl7.org/CodeSystem/condition-clinical"
        ),
        "code": _concept(code),
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def _employment(rid: str, pid: str, answer: str, when: str = "2026-06-01") -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": _concept("67875-5", LOINC),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueCodeableConcept": _concept(answer, LOINC),
    }


def _fit_note(rid: str, pid: str, when: str, as_document: bool) -> dict:
    if as_document:
        return {
            "resourceType": "DocumentReference",
            "id": rid,
            "status": "current",
            "type": _concept("751481000000104"),
            "subject": {"reference": f"Patient/{pid}"},
            "context": {"period": {"start": when}},
            "content": [{"attachment": {"contentType": "application/pdf", "title": "Fit note"}}],
        }
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": _concept("751481000000104"),
        "subject": {"reference": f"Patient/{pid}"},
        "performedDateTime": when,
    }


def _referral(rid: str, pid: str, status: str, intent: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": intent,
        "code": {"coding": [{"system": IPS_SYSTEM, "code": "ips-referral"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-03-01",
    }


def _task(rid: str, pid: str, focus: str, status: str, modified: str) -> dict:
    return {
        "resourceType": "Task",
        "id": rid,
        "status": status,
        "intent": "proposal",
        "focus": {"reference": f"ServiceRequest/{focus}"},
        "for": {"reference": f"Patient/{pid}"},
        "authoredOn": "2026-03-01",
        "lastModified": modified,
    }


def _encounter(rid: str, pid: str) -> dict:
    return {
        "resourceType": "Encounter",
        "id": rid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _collection(resources: list[dict], urn_for: str | None = None) -> dict:
    """A collection Bundle; with `urn_for`, that patient's fullUrl is a urn:uuid and the other
    resources refer to it by that urn (the server rewrites it, the file reader resolves it)."""
    urn = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, urn_for)}" if urn_for else None
    entries = []
    for resource in resources:
        rtype, rid = resource["resourceType"], resource["id"]
        full_url = f"https://inline.invalid/fhir/{rtype}/{rid}"
        if urn and rtype == "Patient" and rid == urn_for:
            full_url = urn
        elif urn:
            for field in ("subject", "for"):
                if resource.get(field) == {"reference": f"Patient/{urn_for}"}:
                    resource[field] = {"reference": urn}
        entries.append({"fullUrl": full_url, "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def inline_bundles() -> list[dict]:
    """Six patients: propose (unemployed; fit notes, referenced by urn:uuid), in work, an open
    referral, a rejected proposal (Task), and one with no records; and an Encounter, which the
    screen never reads."""
    pain = "82423001"
    rejected = "2026-04-02T10:00:00+01:00"
    return [
        _collection(
            [
                _patient("rest-1"),
                _condition("rest-1-c", "rest-1", pain),
                _employment("rest-1-o", "rest-1", "LA17956-6"),
                _encounter("rest-1-e", "rest-1"),
            ]
        ),
        _collection(
            [
                _patient("rest-2"),
                _condition("rest-2-c", "rest-2", pain),
                _fit_note("rest-2-f1", "rest-2", "2026-05-01", as_document=True),
                _fit_note("rest-2-f2", "rest-2", "2026-08-01", as_document=False),
            ],
            urn_for="rest-2",
        ),
        _collection(
            [
                _patient("rest-3"),
                _condition("rest-3-c", "rest-3", pain),
                _employment("rest-3-o", "rest-3", "LA30136-8"),
            ]
        ),
        _collection(
            [
                _patient("rest-4"),
                _condition("rest-4-c", "rest-4", pain),
                _employment("rest-4-o", "rest-4", "LA17956-6"),
                _referral("rest-4-sr", "rest-4", "active", "order"),
            ]
        ),
        _collection(
            [
                _patient("rest-5", birth="1990-07-30"),
                _condition("rest-5-c", "rest-5", pain),
                _employment("rest-5-o", "rest-5", "LA17956-6"),
                _referral("rest-5-sr", "rest-5", "completed", "proposal"),
                _task("rest-5-t", "rest-5", "rest-5-sr", "rejected", rejected),
            ]
        ),
        _collection([_patient("rest-6", birth="2001-12-31")]),
    ]


# -- loading a server -----------------------------------------------------------------------------


def as_transaction(bundle: dict) -> dict:
    """A collection Bundle as a transaction that PUTs each resource at its own id."""
    entries = []
    for entry in bundle.get("entry") or []:
        resource = entry["resource"]
        rtype, rid = resource["resourceType"], resource.get("id")
        if rid is None:  # as the file reader does: the id from a urn:uuid fullUrl
            rid = entry["fullUrl"].split(":", 2)[2]
            resource = {**resource, "id": rid}
        new = {"resource": resource, "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
        if entry.get("fullUrl"):
            new["fullUrl"] = entry["fullUrl"]
        entries.append(new)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_file(client: FhirClient, path: Path) -> None:
    data = orjson.loads(path.read_bytes())
    if data.get("resourceType") == "Bundle":
        client.transaction(as_transaction(data))
    else:
        client.update(data)


@dataclass
class Dataset:
    name: str
    server: FhirTestServer
    files: list[Path]  # as given
    held: list[Path]  # as the server holds them (ServiceRequest lastUpdated from the server)
    patient_ids: list[str]
    revoked: set[str]  # patients with a revoked ServiceRequest

    def client(self, **kw: object) -> FhirClient:
        return FhirClient(
            self.server.base_url, headers={"Prefer": "handling=strict"}, timeout=(5, 30), **kw
        )


def _as_held(client: FhirClient, path: Path, out: Path) -> tuple[Path, set[str]]:
    """A copy of a file whose ServiceRequests carry the server's lastUpdated; and the patients
    with a revoked ServiceRequest."""
    data = orjson.loads(path.read_bytes())
    entries = data["entry"] if data.get("resourceType") == "Bundle" else [{"resource": data}]
    revoked: set[str] = set()
    for entry in entries:
        resource = entry["resource"]
        if resource["resourceType"] == "ServiceRequest":
            stored, _ = client.read("ServiceRequest", resource["id"])
            resource["meta"] = {
                **resource.get("meta", {}),
                "lastUpdated": stored["meta"]["lastUpdated"],
            }
            if resource.get("status") == "revoked":
                revoked.add(resource["subject"]["reference"].removeprefix("Patient/"))
    out.write_bytes(orjson.dumps(data))
    return out, revoked


@pytest.fixture(scope="module", params=["inline", "fhir_fixtures"])
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dataset]:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "inline":
        files = []
        for n, bundle in enumerate(inline_bundles(), 1):
            path = folder / f"given-{n}.json"
            path.write_bytes(orjson.dumps(bundle))
            files.append(path)
    else:
        if not FIXTURES.is_dir() or not any(FIXTURES.rglob("*.json")):
            pytest.skip(f"no fixtures in {FIXTURES}")
        files = discover([FIXTURES])
    with running_test_server() as server:
        held_dir = folder / "held"
        held_dir.mkdir()
        held, revoked = [], set()
        with FhirClient(server.base_url, headers={"Prefer": "handling=strict"}) as client:
            for path in files:
                load_file(client, path)
            for n, path in enumerate(files, 1):
                copy_path, found = _as_held(client, path, held_dir / f"{n:03d}-{path.name}")
                held.append(copy_path)
                revoked |= found
        ruleset = load_ruleset()
        ids = sorted(collect(files, ruleset).patients)
        yield Dataset(request.param, server, files, held, ids, revoked)


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset()


def decisions(ruleset: CompiledRuleset, population: Population) -> list[dict]:
    """As decisions.ndjson and `explain --json` give them (words included)."""
    found = decide_all(ruleset, population.patients.values(), AS_OF)
    return [d.to_dict(step_line) for d in found]


# -- the whole population -------------------------------------------------------------------------


def test_whole_server_gives_the_decisions_of_the_files(dataset: Dataset, ruleset: CompiledRuleset):
    expected_population = collect(dataset.held, ruleset)
    with dataset.client() as client:
        population = read_server(client, ruleset)
    assert sorted(population.patients) == dataset.patient_ids
    assert decisions(ruleset, population) == decisions(ruleset, expected_population)
    assert population.orphans == expected_population.orphans
    assert population.unlinked == expected_population.unlinked
    assert set(population.report.by_type) <= RELEVANT_TYPES  # nothing else was asked for
    assert population.report.files_read == 0


def test_only_revoked_referrals_differ_from_the_files_as_given(
    dataset: Dataset, ruleset: CompiledRuleset
):
    with dataset.client() as client:
        server = {d["patient"]: d for d in decisions(ruleset, read_server(client, ruleset))}
    given = {d["patient"]: d for d in decisions(ruleset, collect(dataset.files, ruleset))}
    assert server.keys() == given.keys()
    differ = {ref.removeprefix("Patient/") for ref in given if given[ref] != server[ref]}
    assert differ <= dataset.revoked


def test_small_pages_give_the_same_decisions(dataset: Dataset, ruleset: CompiledRuleset):
    with dataset.client() as client:
        paged = read_server(client, ruleset, page_size=3)
        whole = read_server(client, ruleset, page_size=1000)
    assert decisions(ruleset, paged) == decisions(ruleset, whole)
    assert paged.report.by_type == whole.report.by_type


def test_progress_counts_resources(
    dataset: Dataset, ruleset: CompiledRuleset, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("ips_screen.sources.population.PROGRESS_EVERY", 5)
    seen: list[int] = []
    with dataset.client() as client:
        population = read_server(client, ruleset, progress=seen.append)
    total = population.report.resources_read
    assert seen == list(range(5, total + 1, 5))


# -- given patients -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 50])
def test_given_patients_give_their_decisions(
    dataset: Dataset, ruleset: CompiledRuleset, chunk: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(fhir_rest, "PATIENT_CHUNK", chunk)
    wanted = dataset.patient_ids[::2]
    expected = [
        d
        for d in decisions(ruleset, collect(dataset.held, ruleset))
        if d["patient"].removeprefix("Patient/") in wanted
    ]
    with dataset.client() as client:
        population = read_server(client, ruleset, patients=[f"Patient/{wanted[0]}", *wanted])
    assert sorted(population.patients) == sorted(wanted)
    assert decisions(ruleset, population) == expected
    assert population.orphans == {}


def test_a_patient_not_on_the_server_is_reported(
    dataset: Dataset, ruleset: CompiledRuleset, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="ips_screen.sources")
    with dataset.client() as client:
        population = read_server(client, ruleset, patients=[dataset.patient_ids[0], "nobody-here"])
    assert list(population.patients) == [dataset.patient_ids[0]]
    assert "1 of the 2 patients asked for are not on the server: Patient/nobody-here" in caplog.text


def test_the_server_supports_the_search_parameters_used(dataset: Dataset):
    """R4 defines `patient` on every clinical type read (Task: Task.for as a Patient); strict
    handling makes the server refuse a parameter it does not know, e.g. `for`, which R4 lacks."""
    pid = dataset.patient_ids[0]
    with dataset.client() as client:
        for rtype in sorted(RELEVANT_TYPES - {"Patient"}):
            list(client.search(rtype, {"patient": f"Patient/{pid}", "_count": 1}))
        with pytest.raises(ServerError, match=r"HTTP 400 .*GET /fhir/Task"):
            list(client.search("Task", {"for": f"Patient/{pid}"}))


# -- the command line -----------------------------------------------------------------------------


def _run(argv: list[str]) -> None:
    assert main(argv, environ={}) == 0


def test_cli_screen_from_a_server_writes_the_decisions_of_the_files(
    dataset: Dataset, tmp_path: Path
):
    common = ["--as-of", AS_OF.isoformat()]
    _run(["-q", "screen", dataset.server.base_url, *common, "--out", str(tmp_path / "server")])
    _run(["-q", "screen", *map(str, dataset.held), *common, "--out", str(tmp_path / "files")])
    server = (tmp_path / "server" / "decisions.ndjson").read_bytes()
    assert server == (tmp_path / "files" / "decisions.ndjson").read_bytes()
    assert server.count(b"\n") == len(dataset.patient_ids)


def test_cli_screen_given_patients(dataset: Dataset, tmp_path: Path):
    first, last = dataset.patient_ids[0], dataset.patient_ids[-1]
    url, as_of = dataset.server.base_url, AS_OF.isoformat()
    given = ["--patient-id", first, "--patient-id", f"Patient/{last}", "--page-size", "2"]
    _run(["-q", "screen", url, "--as-of", as_of, "--out", str(tmp_path), *given])
    lines = (tmp_path / "decisions.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["patient"] for line in lines] == [
        f"Patient/{first}",
        f"Patient/{last}",
    ]


def test_cli_explain_from_a_server(
    dataset: Dataset, ruleset: CompiledRuleset, capsys: pytest.CaptureFixture[str]
):
    pid = dataset.patient_ids[-1]
    url, as_of = dataset.server.base_url, AS_OF.isoformat()
    _run(["-q", "explain", url, "--patient", pid, "--as-of", as_of, "--json"])
    shown = orjson.loads(capsys.readouterr().out)
    expected = [
        d
        for d in decisions(ruleset, collect(dataset.held, ruleset))
        if d["patient"] == f"Patient/{pid}"
    ]
    assert [shown] == expected
