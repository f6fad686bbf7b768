"""Reading input files (ips_screen.sources): layouts, locations of problems, grouping into facts."""

from __future__ import annotations

import copy
import gzip
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from ips_screen.errors import InputError
from ips_screen.facts.model import PatientFacts
from ips_screen.reading import MAX_SKIPPED, ReadReport
from ips_screen.ruleset.codelists import read_codelist
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset
from ips_screen.sources import collect
from ips_screen.sources.files import discover, iter_resources
from ips_screen.sources.population import Population, collect_resources
from ips_screen.sources.resource_types import R4_RESOURCE_TYPES

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
INVALID = ROOT / "tests" / "data" / "invalid"

PID = "6f0c1d2e-3a4b-4c5d-8e6f-000000000001"
PAIN = "6f0c1d2e-3a4b-4c5d-8e6f-000000000002"
UNEMPLOYED = "6f0c1d2e-3a4b-4c5d-8e6f-000000000003"
PRAPARE = "6f0c1d2e-3a4b-4c5d-8e6f-000000000004"
DIABETES = "6f0c1d2e-3a4b-4c5d-8e6f-000000000005"
ENCOUNTER = "6f0c1d2e-3a4b-4c5d-8e6f-000000000006"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def ruleset() -> object:
    if DEFAULT_RULESET.exists():
        return load_ruleset()
    folder = ROOT / "rules" / "codelists"
    codelists = {p.stem: read_codelist(p.stem, p) for p in sorted(folder.glob("*.csv"))}
    return SimpleNamespace(codelists=codelists)


def concept(system: str, code: str, display: str = "") -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def subject(pid: str = PID) -> dict:
    return {"reference": f"Patient/{pid}"}


def patient(pid: str = PID, birth: str = "1980-02-03") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": birth,
        "generalPractitioner": [{"reference": "Practitioner/gp-1"}],
    }


def condition(rid: str, code: str, when: str, pid: str = PID, **extra: object) -> dict:
    return {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"
        ),
        "code": concept(SNOMED, code),
        "subject": subject(pid),
        "onsetDateTime": when,
        **extra,
    }


def sample() -> list[dict]:
    """One patient: chronic pain, unemployed (Condition and PRAPARE answer), and noise."""
    return [
        patient(),
        condition(PAIN, "82423001", "2023-05-01"),
        condition(UNEMPLOYED, "73438004", "2024-01-10T09:00:00+00:00"),
        {
            "resourceType": "Observation",
            "id": PRAPARE,
            "status": "final",
            "code": concept(LOINC, "93025-5"),
            "subject": subject(),
            "effectiveDateTime": "2024-02-01T10:00:00Z",
            "component": [
                {
                    "code": concept(LOINC, "67875-5"),
                    "valueCodeableConcept": concept(LOINC, "LA17956-6"),
                }
            ],
        },
        condition(DIABETES, "44054006", "2010-01-01"),  # in no codelist
        {"resourceType": "Encounter", "id": ENCOUNTER, "status": "finished", "subject": subject()},
    ]


EXPECTED_REFS = [f"Condition/{PAIN}", f"Condition/{UNEMPLOYED}", f"Observation/{PRAPARE}"]


# --- writing the sample in each layout ---------------------------------------------------------


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    return path


def ndjson_bytes(resources: Iterable[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def by_type(resources: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for resource in resources:
        out.setdefault(resource["resourceType"], []).append(resource)
    return out


def as_collection(folder: Path, resources: list[dict]) -> Path:
    entries = [
        {"fullUrl": f"https://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        for r in resources
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return write_json(folder / "bundle.json", bundle)


def as_transaction(folder: Path, resources: list[dict]) -> Path:
    """Synthea style: no ids, fullUrl urn:uuid, references to the patient by urn:uuid."""
    entries = []
    for original in resources:
        resource = copy.deepcopy(original)
        rid = resource.pop("id")
        if "subject" in resource:
            resource["subject"] = {"reference": f"urn:uuid:{PID}"}
        entries.append(
            {
                "fullUrl": f"urn:uuid:{rid}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return write_json(folder / "transaction.json", bundle)


def as_ndjson(folder: Path, resources: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rtype, group in by_type(resources).items():
        (folder / f"{rtype}.000.ndjson").write_bytes(ndjson_bytes(group))
    return folder


def as_ndjson_gz(folder: Path, resources: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rtype, group in by_type(resources).items():
        with gzip.open(folder / f"{rtype}.000.ndjson.gz", "wb") as out:
            out.write(ndjson_bytes(group))
    return folder


def as_single_files(folder: Path, resources: list[dict]) -> Path:
    for resource in resources:
        write_json(
            folder / "resources" / f"{resource['resourceType']}-{resource['id']}.json", resource
        )
    return folder


LAYOUTS = {
    "collection": as_collection,
    "transaction": as_transaction,
    "ndjson": as_ndjson,
    "ndjson-gz": as_ndjson_gz,
    "single-files": as_single_files,
}


def only(population: Population) -> PatientFacts:
    assert list(population.patients) == [PID]
    return population.patients[PID]


# --- layouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_gives_the_same_facts(tmp_path: Path, ruleset: object, layout: str) -> None:
    path = LAYOUTS[layout](tmp_path / layout, sample())
    population = collect([path], ruleset)
    facts = only(population)

    reference = only(collect_resources(sample(), ruleset))
    assert facts == reference
    assert [r.ref for r in facts.records] == EXPECTED_REFS  # sorted by date
    assert str(facts.birth_date) == "1980-02-03"
    assert facts.general_practitioners == ("Practitioner/gp-1",)
    assert population.orphans == {}
    assert population.unlinked == 0
    assert population.report.resources_read == 6
    assert population.report.by_type["Condition"] == 3
    assert population.report.skipped_count == 0


def test_all_layouts_together_keep_each_resource_once(tmp_path: Path, ruleset: object) -> None:
    paths = [make(tmp_path / name, sample()) for name, make in sorted(LAYOUTS.items())]
    population = collect(paths, ruleset)
    assert [r.ref for r in only(population).records] == EXPECTED_REFS
    assert population.report.resources_read == 6 * len(LAYOUTS)
    assert population.report.files_read == 1 + 4 + 4 + 1 + 6


def test_records_not_relevant_to_the_ruleset_are_not_kept(ruleset: object) -> None:
    facts = only(collect_resources(sample(), ruleset))
    refs = {r.ref for r in facts.records}
    assert f"Condition/{DIABETES}" not in refs
    assert f"Encounter/{ENCOUNTER}" not in refs


def test_patient_without_records_is_kept(ruleset: object) -> None:
    population = collect_resources([patient("p2"), patient("p1")], ruleset)
    assert [p.id for p in population] == ["p1", "p2"]
    assert population.patients["p1"].records == ()


# --- bundles --------------------------------------------------------------------------------


def test_bundle_details(tmp_path: Path, ruleset: object) -> None:
    pain = condition(PAIN, "82423001", "2023-05-01")
    del pain["id"]
    nested = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": f"https://example.org/fhir/Condition/{PAIN}", "resource": pain},
            {
                "search": {"mode": "outcome"},
                "resource": {"resourceType": "OperationOutcome", "issue": []},
            },
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": patient()},
            {"request": {"method": "DELETE", "url": "Condition/gone"}},  # no resource: skipped
            {"resource": nested},
        ],
    }
    report = ReadReport()
    items = list(iter_resources([write_json(tmp_path / "b.json", bundle)], report))
    assert [(r["resourceType"], where.split(": ")[-1]) for r, where, _ in items] == [
        ("Patient", "entry 1"),
        ("Condition", "entry 3.1"),  # id taken from the fullUrl
    ]
    assert items[1][0]["id"] == PAIN
    assert report.by_type == {"Patient": 1, "Condition": 1}
    assert [r.ref for r in only(collect([tmp_path], ruleset)).records] == [f"Condition/{PAIN}"]


def test_urn_uuid_references_resolve_within_the_bundle(tmp_path: Path) -> None:
    as_transaction(tmp_path, sample()[:2])
    items = list(iter_resources([tmp_path / "transaction.json"]))
    _, where, resolve = items[1]
    assert where.endswith("transaction.json: entry 2")
    assert resolve is not None
    assert resolve(f"urn:uuid:{PID}") == f"Patient/{PID}"
    assert resolve("urn:uuid:not-here") is None


# --- discovery ------------------------------------------------------------------------------


def test_discover_recurses_sorted_and_counts_other_files(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.ndjson").write_text("")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "c.ndjson.gz").write_bytes(gzip.compress(b""))
    (tmp_path / "README.md").write_text("notes")
    (tmp_path / "b" / "data.csv").write_text("x")
    report = ReadReport()
    found = discover([tmp_path], report)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.json",
        "b/z.ndjson",
        "c.ndjson.gz",
    ]
    assert report.files_ignored == 2
    assert discover([tmp_path / "a.json", tmp_path]) == found  # each file once


def test_discover_reads_nothing_inside_an_output_folder_in_the_input(tmp_path: Path) -> None:
    """Whether named by the path given or by another way to it (a symlink, `..`)."""
    (tmp_path / "Patient.ndjson").write_text("")
    for name in ("decisions.ndjson", "proposals.json", "report.html", "runs/1/summary.json"):
        (tmp_path / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / name).write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "out")
    for skip in (tmp_path / "out", tmp_path / "link", tmp_path / "out" / ".." / "link"):
        report = ReadReport()
        assert discover([tmp_path], report, skip=[skip]) == [tmp_path / "Patient.ndjson"]
        assert report.files_ignored == 0  # not the user's files to count
    assert len(discover([tmp_path])) == 1 + 3  # without: the three JSON outputs too
    (tmp_path / "Patient.ndjson").unlink()
    with pytest.raises(InputError, match=r"no FHIR input files .*; .*out, an output folder, not"):
        discover([tmp_path], skip=[tmp_path / "out"])


def test_discover_rejects_missing_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json: no such file"):
        discover([tmp_path / "nope.json"])
    (tmp_path / "data.xml").write_text("<Patient/>")
    with pytest.raises(InputError, match=r"data\.xml: unsupported file type"):
        discover([tmp_path / "data.xml"])
    with pytest.raises(InputError, match="no FHIR input files"):
        discover([tmp_path])


def test_blank_lines_are_skipped(tmp_path: Path, ruleset: object) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n" + orjson.dumps(patient()) + b"\n   \n\n")
    assert len(collect([path], ruleset)) == 1


# --- problems -------------------------------------------------------------------------------


def test_malformed_ndjson_names_file_and_line(tmp_path: Path, ruleset: object) -> None:
    path = tmp_path / "Condition.000.ndjson"
    path.write_bytes(ndjson_bytes(sample()[1:3]) + b'{"resourceType": "Condition", "id": x}\n')
    with pytest.raises(InputError) as caught:
        collect([path], ruleset)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: not valid JSON (")
    assert "at column 37" in message
    assert "\n" not in message


def test_malformed_bundle_names_file_and_line(tmp_path: Path, ruleset: object) -> None:
    path = tmp_path / "bundle.json"
    path.write_text('{\n  "resourceType": "Bundle",\n  "type": "collection"\n  "entry": []\n}\n')
    with pytest.raises(InputError, match=rf"^{path}:4: not valid JSON \("):
        collect([path], ruleset)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"[1, 2]", "not a FHIR resource (a JSON array)"),
        (b"17", "not a FHIR resource (a JSON number)"),
        (b'"Patient"', "not a FHIR resource (a JSON string)"),
        (b"null", "not a FHIR resource (JSON null)"),
        (b'{"id": "x"}', "not a FHIR resource (a JSON object without resourceType)"),
        (b'{"resourceType": "Banana"}', "unknown resourceType 'Banana'"),
        (b'{"resourceType": "patient"}', "unknown resourceType 'patient'"),
    ],
)
def test_values_that_are_not_resources(
    tmp_path: Path, ruleset: object, line: bytes, fragment: str
) -> None:
    path = tmp_path / "data.ndjson"
    path.write_bytes(orjson.dumps(patient()) + b"\n" + line + b"\n")
    with pytest.raises(InputError) as caught:
        collect([path], ruleset)
    assert str(caught.value).startswith(f"{path}:2: {fragment}")


def test_skip_invalid_keeps_the_good_and_counts_the_bad(tmp_path: Path, ruleset: object) -> None:
    path = tmp_path / "mixed.ndjson"
    lines = [
        orjson.dumps(patient()),
        b"{not json",
        b"[]",
        orjson.dumps(condition(PAIN, "82423001", "2023-05-01")),
        b'{"resourceType": "Banana", "id": "b"}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    population = collect([path], ruleset, skip_invalid=True)
    assert [r.ref for r in only(population).records] == [f"Condition/{PAIN}"]
    report = population.report
    assert report.skipped_count == 3
    assert [(s.where, s.problem.split(" (")[0]) for s in report.skipped] == [
        (f"{path}:2", "not valid JSON"),
        (f"{path}:3", "not a FHIR resource"),
        (f"{path}:5", "unknown resourceType 'Banana'"),
    ]
    assert str(report.skipped[2]).startswith(f"{path}:5: unknown resourceType")
    assert report.resources_read == 2


def test_skipped_list_is_capped_but_counted(tmp_path: Path, ruleset: object) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b"[]\n" * (MAX_SKIPPED + 5) + orjson.dumps(patient()) + b"\n")
    population = collect([path], ruleset, skip_invalid=True)
    assert len(population.report.skipped) == MAX_SKIPPED
    assert population.report.skipped_count == MAX_SKIPPED + 5
    assert len(population) == 1


def invalid_cases() -> list[Path]:
    return sorted(p for p in INVALID.iterdir() if p.suffix != ".expected")


@pytest.mark.parametrize("path", invalid_cases(), ids=lambda p: p.name)
def test_invalid_files(path: Path, ruleset: object) -> None:
    expected = Path(f"{path}.expected").read_text(encoding="utf-8").strip()
    with pytest.raises(InputError) as caught:
        collect([path], ruleset)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(str(path))
    assert "\n" not in message
    population = collect([path], ruleset, skip_invalid=True)  # and skipping goes on
    assert population.report.skipped_count >= 1


def test_every_invalid_case_has_an_expected_message() -> None:
    assert invalid_cases()
    for path in INVALID.iterdir():
        if path.suffix == ".expected":
            assert Path(str(path)[: -len(".expected")]).exists(), path
        else:
            assert Path(f"{path}.expected").exists(), path


# --- grouping -------------------------------------------------------------------------------


def test_records_of_an_absent_patient_are_orphans(ruleset: object) -> None:
    population = collect_resources(
        [
            *sample(),
            condition("c-ghost", "82423001", "2022-01-01", pid="ghost"),
            condition("c-ghost-noise", "44054006", "2022-01-01", pid="ghost"),
        ],
        ruleset,
    )
    assert population.orphans == {"ghost": 1}
    assert "ghost" not in population.patients
    assert len(only(population).records) == 3


def test_relevant_records_without_a_patient_are_unlinked(ruleset: object) -> None:
    lost = condition("c-lost", "82423001", "2022-01-01")
    del lost["subject"]
    group = condition("c-group", "82423001", "2022-01-01")
    group["subject"] = {"reference": "Group/g1"}
    population = collect_resources([patient(), lost, group, lost], ruleset)
    assert population.unlinked == 2
    assert only(population).records == ()


def test_the_last_copy_read_wins(tmp_path: Path, ruleset: object) -> None:
    first = [patient(birth="1970-01-01"), condition(PAIN, "82423001", "2020-01-01")]
    second = [patient(birth="1971-01-01"), condition(PAIN, "82423001", "2021-06-01")]
    as_ndjson(tmp_path / "1-old", first)
    as_ndjson(tmp_path / "2-new", second)
    facts = only(collect([tmp_path], ruleset))
    assert str(facts.birth_date) == "1971-01-01"
    assert [(r.ref, str(r.date)) for r in facts.records] == [(f"Condition/{PAIN}", "2021-06-01")]

    # a later copy the rules cannot use removes the earlier one
    retracted = condition(PAIN, "82423001", "2021-06-01")
    retracted["verificationStatus"] = concept(
        "http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"
    )
    as_ndjson(tmp_path / "3-retracted", [retracted])
    assert only(collect([tmp_path], ruleset)).records == ()


def test_progress_is_reported_after_each_part_read(tmp_path: Path, ruleset: object) -> None:
    for n, size in enumerate((20_500, 3)):
        with gzip.open(tmp_path / f"Basic.{n:03}.ndjson.gz", "wb") as out:
            for i in range(size):
                out.write(b'{"resourceType":"Basic","id":"b%d"}\n' % i)
    seen: list[int] = []
    population = collect([tmp_path], ruleset, progress=seen.append)
    assert seen == [20_500, 20_503]  # resources read so far, in input order
    assert population.report.by_type == {"Basic": 20_503}
    assert len(population) == 0


def test_resource_type_list_is_r4() -> None:
    assert len(R4_RESOURCE_TYPES) == 146
    assert {"Patient", "Condition", "Parameters", "MedicinalProduct"} <= R4_RESOURCE_TYPES
    assert not {"Resource", "DomainResource", "SubscriptionTopic"} & R4_RESOURCE_TYPES


# --- the shared example data ----------------------------------------------------------------


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.mark.shared_data
def test_synthea_bulk_10(ruleset: object) -> None:
    population = collect([shared("synthea-bulk-10")], ruleset)
    assert len(population.patients) == 13
    assert population.orphans == {}
    assert population.unlinked == 0
    assert sum(1 for p in population if p.deceased_date or p.deceased) == 3
    for facts in population:
        for record in facts.records:
            assert record.ref.split("/")[0] in {"Condition", "Procedure", "DocumentReference"}
    assert population.report.files_read == 13
    assert population.report.files_ignored == 1  # NOTICE
    assert population.report.by_type["Patient"] == 13


@pytest.mark.shared_data
def test_synthea_california_transaction_bundles(ruleset: object) -> None:
    population = collect([shared("synthea-california")], ruleset)
    assert len(population.patients) == 86
    assert population.orphans == {}
    assert population.unlinked == 0
    assert any(r.resource_type == "Observation" for p in population for r in p.records)


@pytest.mark.shared_data
def test_ahrq_collection_bundle(ruleset: object) -> None:
    facts = only_one(collect([shared("ahrq-pain-test-patient")], ruleset))
    codes = {code for record in facts.records for code in record.codes}
    assert ("http://snomed.info/sct", "203082005") in codes


def only_one(population: Population) -> PatientFacts:
    assert len(population.patients) == 1
    return next(iter(population))
