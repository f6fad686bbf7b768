"""The synthetic practice list (ips_screen.synth): reproducible bytes, well-formed FHIR, and a
population that holds every kind of record the screen has to handle."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from ips_screen.codes import IPS_SYSTEM
from ips_screen.dates import parse_fhir_date
from ips_screen.facts.extract import codings, patient_of
from ips_screen.ruleset.codelists import Codelist, normalise, read_codelist
from ips_screen.synth import MANIFEST, RESOURCE_TYPES, generate, vocab, write_bulk

ROOT = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 11, 26)
SEED = 20261126
KINDS_PATIENTS = 3000  # enough for the rare kinds (IPS referrals, declines) with this seed


def codelist(name: str) -> Codelist:
    return read_codelist(name, ROOT / "rules" / "codelists" / f"{name}.csv")


def read_dir(folder: Path) -> dict[str, list[bytes]]:
    return {t: (folder / f"{t}.000.ndjson").read_bytes().splitlines() for t in RESOURCE_TYPES}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("synth")
    return folder, write_bulk(folder, 200, SEED, AS_OF)


@pytest.fixture(scope="module")
def population() -> list[list[dict]]:
    return list(generate(KINDS_PATIENTS, SEED, AS_OF))


# --- reproducibility ---------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert write_bulk(first, 200, 7, AS_OF) == write_bulk(second, 200, 7, AS_OF)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert names == sorted([MANIFEST, *(f"{t}.000.ndjson" for t in RESOURCE_TYPES)])
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_different_seed_or_date_gives_different_files(tmp_path: Path) -> None:
    write_bulk(tmp_path / "a", 50, 7, AS_OF)
    write_bulk(tmp_path / "b", 50, 8, AS_OF)
    write_bulk(tmp_path / "c", 50, 7, date(2025, 1, 1))
    patients = [(tmp_path / d / "Patient.000.ndjson").read_bytes() for d in "abc"]
    assert len(set(patients)) == 3


def test_a_smaller_list_is_a_prefix_of_a_larger_one() -> None:
    assert list(generate(5, SEED, AS_OF)) == list(generate(10, SEED, AS_OF))[:5]


def test_negative_patient_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        next(generate(-1, SEED, AS_OF))


# --- file layout and well-formedness ------------------------------------------------------------


def test_every_line_is_a_sorted_json_resource_of_its_file(written) -> None:
    folder, counts = written
    for rtype, lines in read_dir(folder).items():
        assert len(lines) == counts[rtype]
        for line in lines:
            resource = orjson.loads(line)
            assert isinstance(resource, dict)
            assert resource["resourceType"] == rtype
            assert orjson.dumps(resource, option=orjson.OPT_SORT_KEYS) == line
    assert (folder / "Patient.000.ndjson").read_bytes().endswith(b"\n")


def test_manifest_has_the_parameters_and_counts(written) -> None:
    folder, counts = written
    manifest = orjson.loads((folder / MANIFEST).read_bytes())
    assert manifest["seed"] == SEED
    assert manifest["patients"] == 200
    assert manifest["as_of"] == "2026-11-26"
    assert manifest["counts"] == counts
    assert {o["type"]: o["count"] for o in manifest["output"]} == counts
    assert counts["Patient"] == 200


def test_ids_are_unique_and_every_record_has_a_known_patient(written) -> None:
    folder, _ = written
    files = read_dir(folder)
    patients = {orjson.loads(line)["id"] for line in files["Patient"]}
    assert len(patients) == 200
    ids: Counter[str] = Counter()
    for rtype, lines in files.items():
        for line in lines:
            resource = orjson.loads(line)
            ids[f"{rtype}/{resource['id']}"] += 1
            if rtype == "Patient":
                continue
            if rtype == "Encounter":
                ref = resource["subject"]["reference"]
            else:
                ref = f"Patient/{patient_of(resource)}"
            assert ref.startswith("Patient/") and ref[8:] in patients, (rtype, ref)
    assert max(ids.values()) == 1


@pytest.mark.slow
def test_records_fall_in_the_history_window_and_before_death(population) -> None:
    first_day = date(2021, 11, 26)
    for resources in population:
        patient = resources[0]
        last_day = parse_fhir_date(patient.get("deceasedDateTime")) or AS_OF
        for resource in resources[1:]:
            for key in ("onsetDateTime", "effectiveDateTime", "performedDateTime", "authoredOn"):
                if key in resource:
                    day = parse_fhir_date(resource[key])
                    assert day is not None and first_day <= day <= last_day, resource


@pytest.mark.slow
def test_a_sample_of_each_type_validates_as_fhir(population) -> None:
    by_type: dict[str, list[dict]] = defaultdict(list)
    for resources in population:
        for resource in resources:
            by_type[resource["resourceType"]].append(resource)
    assert set(by_type) == set(RESOURCE_TYPES)
    rng = random.Random(0)
    for rtype, resources in sorted(by_type.items()):
        model = get_fhir_model_class(rtype)
        for resource in rng.sample(resources, min(20, len(resources))):
            model.model_validate(resource)


# --- the codes and the population ----------------------------------------------------------------


def test_vocabulary_codes_are_in_the_codelists_with_the_right_class() -> None:
    def keys(codes) -> set[tuple[str, str]]:
        return {normalise(c[0], c[1]) for c in codes}

    assert keys(vocab.CHRONIC_PAIN) <= codelist("chronic-pain").exact_keys()
    persistent = keys(vocab.OSTEOARTHRITIS) | keys(vocab.LOW_BACK_PAIN)
    assert persistent <= codelist("persistent-pain").exact_keys()
    assert keys([vocab.PAIN_REVIEW]) <= codelist("chronic-pain-review").exact_keys()
    palliative = keys([vocab.PALLIATIVE_CONDITION, vocab.PALLIATIVE_REGISTER])
    assert (
        palliative | keys(vocab.PALLIATIVE_PROCEDURES) <= codelist("palliative-care").exact_keys()
    )
    fit = codelist("fit-notes")
    for fitness, codes in vocab.FIT_NOTES.items():
        assert {fit.category_of(k) for k in keys(codes)} == {fitness}
    status = codelist("employment-status")
    expected = {"long-term-sick": "economically-inactive", "homemaker": "economically-inactive"}
    expected["other-inactive"] = "economically-inactive"
    for table in (vocab.STATUS_SNOMED, vocab.STATUS_PRAPARE, vocab.STATUS_NHS_DD):
        for name, codes in table.items():
            assert {status.category_of(k) for k in keys(codes)} == {expected.get(name, name)}
    for code in (vocab.PRAPARE_INACTIVE, vocab.PRAPARE_NO_ANSWER):
        assert status.category_of(normalise(code[0], code[1])) is not None
    assert keys([vocab.EMPLOYMENT_QUESTION]) <= codelist("employment-questions").exact_keys()


def _kinds(population: list[list[dict]]) -> Counter[str]:
    """Count the patients having each kind of record."""
    lists = {
        name: codelist(name)
        for name in ("chronic-pain", "persistent-pain", "palliative-care", "employment-status")
    }
    fit = codelist("fit-notes")
    kinds: Counter[str] = Counter()
    for resources in population:
        patient, records = resources[0], resources[1:]
        found: set[str] = set()
        if "deceasedDateTime" in patient or "deceasedBoolean" in patient:
            found.add("deceased")
        fit_days: dict[str, set[str]] = defaultdict(set)
        for r in records:
            rtype = r["resourceType"]
            codes = codings(r.get("type") if rtype == "DocumentReference" else r.get("code"))
            for name, found_list in lists.items():
                if any(c in found_list for c in codes):
                    found.add(f"{name}:{rtype}")
            for c in codes:
                if c in fit:
                    found.add(f"fit:{fit.category_of(c)}")
                    fit_days[rtype].add(r.get("effectiveDateTime", r.get("date", ""))[:10])
                if c == ("http://snomed.info/sct", "860381000000107"):
                    found.add("pain-review")
                if c[0] == "https://fhir.nhs.uk/STU3/CodeSystem/DCH-EmploymentStatus-1":
                    found.add(f"nhs-dd:{c[1].lstrip('0')}")
                if c[0] == IPS_SYSTEM:
                    found.add(f"ips:{r['intent']}:{r['status']}")
            for component in r.get("component", ()):
                if ("http://loinc.org", "67875-5") in codings(component["code"]):
                    found.add("prapare-employment")
            if rtype == "Task" and r["status"] == "rejected" and r.get("statusReason"):
                found.add("task-rejected")
        if fit_days["Observation"] & fit_days["DocumentReference"]:
            found.add("fit-note-with-document")
        if any(k.startswith("employment-status:") for k in found) or "prapare-employment" in found:
            found.add("employment-recorded")
        kinds.update(found)
    return kinds


@pytest.mark.slow
def test_the_population_holds_every_kind_of_record(population) -> None:
    kinds = _kinds(population)
    for kind in (
        "deceased",
        "chronic-pain:Condition",
        "persistent-pain:Condition",
        "pain-review",
        "fit:not-fit",
        "fit:may-be-fit",
        "fit:unspecified",
        "fit-note-with-document",
        "employment-status:Condition",
        "employment-status:Observation",
        "prapare-employment",
        "nhs-dd:4",
        "palliative-care:Condition",
        "palliative-care:Observation",
        "palliative-care:Procedure",
        "ips:order:active",
        "ips:order:completed",
        "ips:proposal:revoked",
        "task-rejected",
    ):
        assert kinds[kind] > 0, kind
    assert kinds["ips:proposal:revoked"] == kinds["task-rejected"]
    # employment status is recorded for a minority; about 1% died; chronic pain is common
    share = kinds["employment-recorded"] / KINDS_PATIENTS
    assert 0.1 < share < 0.35, share
    assert 0.003 < kinds["deceased"] / KINDS_PATIENTS < 0.02
    assert 0.05 < kinds["chronic-pain:Condition"] / KINDS_PATIENTS < 0.15


@pytest.mark.slow
def test_long_term_sickness_is_more_common_with_chronic_pain(population) -> None:
    pain = codelist("chronic-pain")
    counts: Counter[tuple[bool, bool]] = Counter()
    for resources in population:
        codes = [c for r in resources[1:] for c in codings(r.get("code"))]
        has_pain = any(c in pain for c in codes)
        sick = any(c[0].endswith("DCH-EmploymentStatus-1") and c[1] in ("4", "04") for c in codes)
        counts[has_pain, sick] += 1
    with_pain = counts[True, True] / (counts[True, True] + counts[True, False])
    without = counts[False, True] / (counts[False, True] + counts[False, False])
    assert with_pain > 2 * without
