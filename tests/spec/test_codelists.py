"""Codes as real exports write them: matched on system and code, whatever the surrounding spaces or
case; ICD-10 codes with or without the dot (R52.2 = R522); ICD-11 MG30 and its children."""

from __future__ import annotations

import pytest

from ips_screen.ruleset.codelists import normalise
from tests.helpers import (
    ICD10,
    ICD10CM,
    ICD11,
    LOINC,
    SNOMED,
    UNEMPLOYED,
    condition,
    decide,
    default_ruleset,
    employment,
    patient,
    summary,
)

PROPOSED = ("propose", [], [], "early")
NO_PAIN = ("not-eligible", ["no-chronic-pain"], [], None)


def pain_coded(system: str, code: str) -> tuple:
    records = [
        patient(),
        employment(UNEMPLOYED, "2026-06-01"),
        condition(code, system, "2025-01-01"),
    ]
    return summary(decide(records))


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "R52.2"),
        (ICD10, "R522"),  # without the dot
        (ICD10, "r52.2"),  # lower case
        (ICD10, " R52.2 "),  # surrounding spaces
        (ICD10, "R52.1"),
        (ICD10, "R521"),
        (ICD10, "M79.7"),  # fibromyalgia is chronic pain by definition
        (ICD10, "M797"),
        (ICD10CM, "M79.7"),
        (ICD10CM, "G89.29"),
        (ICD10CM, "G8929"),
        (ICD10CM, "g89.4"),
        (ICD10 + " ", "R52.2"),  # a trailing space in the system too
        (SNOMED, "82423001 "),  # trailing space, as some exports (and OpenCodelists) have
        (SNOMED, " 203082005"),
        (ICD11, "MG30"),
        (ICD11, "MG30.0"),  # children of MG30
        (ICD11, "MG30.01"),
        (ICD11, "mg30.3"),
    ],
)
def test_chronic_pain_codes_match_however_written(system, code):
    assert pain_coded(system, code) == PROPOSED


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "R52"),  # the parent "pain, not elsewhere classified" is not chronic
        (ICD10, "R52.9"),
        (ICD11, "MG3"),
        (ICD11, "MG31"),
        (ICD10CM, "R52.2"),  # R52.2 is WHO ICD-10, not ICD-10-CM
        (SNOMED, "R52.2"),  # the code in the wrong system
        (ICD10, "82423001"),
        (SNOMED, "8242.3001"),  # dots are ignored only in ICD codes
        ("http://snomed.info/sct/", "82423001"),  # a different system URI
    ],
)
def test_near_misses_do_not_match(system, code):
    assert pain_coded(system, code) == NO_PAIN


@pytest.mark.parametrize(
    ("system", "code"),
    [
        (ICD10, "M54.5"),
        (ICD10, "M545"),
        (ICD10CM, "M54.5"),
        (ICD10CM, "m54.50"),
        (ICD10CM, "M5451"),
        (ICD10CM, "M54.59"),
    ],
)
def test_low_back_pain_m54_5_and_successors_are_persistent_pain(system, code):
    records = [
        patient(),
        employment(UNEMPLOYED, "2026-06-01"),
        condition(code, system, "2025-01-01"),
    ]
    decision = decide(records)
    assert summary(decision) == PROPOSED
    assert decision.step("persistent-pain-condition").status == "pass"
    new = [patient(), employment(UNEMPLOYED, "2026-06-01"), condition(code, system, "2026-10-01")]
    assert summary(decide(new)) == NO_PAIN


@pytest.mark.parametrize("answer", ["LA17956-6", "la17956-6", " LA17956-6 "])
def test_loinc_answers_match_however_written(answer):
    records = [patient(), condition("82423001"), employment(answer, "2026-06-01")]
    assert summary(decide(records)) == PROPOSED


def test_loinc_question_with_spaces_matches():
    records = [
        patient(),
        condition("82423001"),
        employment(UNEMPLOYED, "2026-06-01", question=" 67875-5"),
    ]
    assert summary(decide(records)) == PROPOSED


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ((ICD10, "R52.2"), (ICD10, "R522")),
        ((ICD10CM, " g89.29 "), (ICD10CM, "G8929")),
        ((ICD11, "MG30.01"), (ICD11, "MG3001")),
        ((SNOMED + " ", " 82423001 "), (SNOMED, "82423001")),
        ((LOINC, "la17956-6"), (LOINC, "LA17956-6")),
        ((SNOMED, "1.2"), (SNOMED, "1.2")),
    ],
)
def test_normalise(key, expected):
    assert normalise(*key) == expected


def test_every_fit_note_code_has_its_class():
    fit_notes = default_ruleset().codelist("fit-notes")
    expected = {
        "751481000000104": "not-fit",
        "751491000000102": "not-fit",  # the same display, second id (trailing space in source)
        "751621000000103": "not-fit",
        "751631000000101": "not-fit",
        "751731000000106": "not-fit",
        "751741000000102": "not-fit",
        "160910001": "not-fit",
        "751601000000107": "may-be-fit",
        "751611000000109": "may-be-fit",
        "751641000000105": "may-be-fit",
        "751651000000108": "may-be-fit",
        "751751000000104": "may-be-fit",
        "751761000000101": "may-be-fit",
        "775281000000100": "may-be-fit",
        "775291000000103": "may-be-fit",
        "775301000000104": "may-be-fit",
        "775311000000102": "may-be-fit",
        "775321000000108": "may-be-fit",
        "775331000000105": "may-be-fit",
        "775351000000103": "may-be-fit",
        "775361000000100": "may-be-fit",
        "225891002": "may-be-fit",
        "775241000000108": "unspecified",
        "775251000000106": "unspecified",
        "1331000000103": "unspecified",
        "14241000000101": "back-to-work",
    }
    for code, category in expected.items():
        assert fit_notes.category_of(normalise(SNOMED, code + " ")) == category, code
    assert fit_notes.category_of(normalise(SNOMED, "224459001")) is None  # on sick leave


def test_partner_codes_are_in_no_codelist():
    for codelist in default_ruleset().codelists.values():
        assert normalise(SNOMED, "213773001") not in codelist
        assert normalise(SNOMED, "160875000") not in codelist
