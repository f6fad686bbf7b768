"""The ruleset file format: strict, with errors that name the file and line; codelists pinned."""

from __future__ import annotations

import copy
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from ips_screen.engine import evaluate
from ips_screen.errors import RulesError
from ips_screen.facts.extract import CodeIndex, extract_patient, extract_record
from ips_screen.facts.model import PatientFacts
from ips_screen.ruleset.codelists import check_pinned, normalise, pin_directory, read_codelist
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset
from ips_screen.ruleset.model import Ruleset

RULES = DEFAULT_RULESET.parent


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A writable copy of the rules folder."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target, ignore=shutil.ignore_patterns("fhir"))
    return target


def test_default_ruleset_loads_with_every_codelist_pinned():
    ruleset = load_ruleset()
    assert ruleset.id == "ips-chronic-pain"
    assert ruleset.model.major_version == "1"
    for codelist in ruleset.codelists.values():
        check_pinned(codelist.path)


def test_unknown_key_is_an_error_naming_file_line_and_key(rules_copy: Path):
    path = rules_copy / "ips-chronic-pain.yaml"
    text = path.read_text()
    text = text.replace("      min_age: 18\n", "      min_age: 18\n      min_agee: 16\n", 1)
    path.write_text(text)
    line = text.splitlines().index("      min_agee: 16") + 1
    with pytest.raises(RulesError) as caught:
        load_ruleset(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: ")
    assert "min_agee" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "kind: outside-age-range",
            "kind: outside-age-rang",
            "exclusions.1.rule.kind: unknown criterion kind 'outside-age-rang' (the kinds: "
            "outside-age-range, any-of, all-of, deceased,",
        ),
        ("kind: outside-age-range", "kind_: outside-age-range", "exclusions.1.rule.kind: missing"),
    ],
    ids=["misspelt", "missing"],
)
def test_a_criterion_kind_that_is_not_one_names_its_line(
    rules_copy: Path, old: str, new: str, message: str
):
    """A misspelt `kind:` is the rule's kind line, said in words; before, the line of the rule
    two lines up and pydantic's 'Input tag ... found using ...'."""
    path = rules_copy / "ips-chronic-pain.yaml"
    text = path.read_text().replace(old, new, 1)
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if new in s)
    if new.startswith("kind_"):
        line -= 2  # no kind: the rule's own first line (`rule:`), where it is missing
    with pytest.raises(RulesError) as caught:
        load_ruleset(path)
    assert str(caught.value).startswith(f"{path}:{line}: {message}"), str(caught.value)


def test_wrong_type_names_the_line(rules_copy: Path):
    path = rules_copy / "ips-chronic-pain.yaml"
    text = path.read_text().replace("recent_months: 24", "recent_months: two years", 1)
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "recent_months: two" in s)
    with pytest.raises(RulesError, match=rf"ips-chronic-pain.yaml:{line}: .*recent_months"):
        load_ruleset(path)


@pytest.mark.parametrize(
    "before, after",
    [
        ("recent_months: 24", "recent_months: 30000"),  # a typo for 300: 2,500 years
        ("within_months: 3 ", "within_months: 99999 "),  # a deferral
        ("earliest_at_least_months: 3", "earliest_at_least_months: 1201"),
    ],
)
def test_a_window_of_more_than_100_years_names_the_line(rules_copy: Path, before, after):
    """Longer windows reach before year 1 (the screen stopped with a traceback)."""
    path = rules_copy / "ips-chronic-pain.yaml"
    text = path.read_text()
    assert before in text
    text = text.replace(before, after, 1)
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if after.strip() in s)
    key = after.split(":")[0]
    with pytest.raises(RulesError, match=rf"ips-chronic-pain.yaml:{line}: .*{key}.*1200"):
        load_ruleset(path)


def test_a_decision_text_with_an_unknown_placeholder_names_the_line(rules_copy: Path):
    """The review's words (texts.decisions) are templates: only their own placeholders."""
    path = rules_copy / "ips-chronic-pain.yaml"
    old = '    already_accepted: "{who} accepted this on {date} at {time}."'
    text = path.read_text()
    assert old in text
    text = text.replace(old, '    already_accepted: "{who} accepted {patient_name} on {date}."')
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "{patient_name}" in s)
    with pytest.raises(RulesError, match=rf"ips-chronic-pain.yaml:{line}: .*unknown placeholder "
                       r"\{patient_name\}; allowed: \{date\}, \{time\}, \{who\}"):  # fmt: skip
        load_ruleset(path)


@pytest.mark.parametrize(
    ("text", "where_what"),
    [
        ("id: x\nversion: [1\n", r"\d+: invalid YAML"),
        ("id: &name x\nversion: *name\n", "1: a YAML anchor"),  # a scalar used twice
        ("id: x\nversion: '1'\ntexts: &t {}\ncriteria:\n  <<: *t\n", "3: a YAML anchor"),  # merge
        ("id: x\n? [a, b]\n: 1\n", "2: a key must be a plain word"),  # a list as a key
    ],
)
def test_yaml_a_ruleset_cannot_be_names_the_line(rules_copy: Path, text: str, where_what: str):
    """Broken YAML, aliases (a few lines can expand to billions of values) and keys that are not
    words are refused, naming the line (an alias: its anchor's)."""
    path = rules_copy / "ips-chronic-pain.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=rf"ips-chronic-pain.yaml:{where_what}"):
        load_ruleset(path)


def test_a_codelist_that_drifts_from_its_manifest_is_refused(rules_copy: Path):
    csv = rules_copy / "codelists" / "chronic-pain.csv"
    csv.write_text(csv.read_text() + "http://snomed.info/sct,999999,Made up,,nowhere\n")
    with pytest.raises(RulesError, match=r"chronic-pain.csv: sha256 .* differs from the manifest"):
        load_ruleset(rules_copy / "ips-chronic-pain.yaml")
    pin_directory(rules_copy / "codelists")  # re-pinning accepts the reviewed change
    assert load_ruleset(rules_copy / "ips-chronic-pain.yaml").codelist("chronic-pain")


def test_the_committed_manifest_matches_the_committed_codelists():
    for csv in sorted((RULES / "codelists").glob("*.csv")):
        check_pinned(csv)


def test_a_codelist_used_but_not_declared_is_an_error(rules_copy: Path):
    path = rules_copy / "ips-chronic-pain.yaml"
    path.write_text(
        path.read_text().replace("  palliative-care: codelists/palliative-care.csv\n", "")
    )
    with pytest.raises(RulesError, match="codelist 'palliative-care' is used but not listed"):
        load_ruleset(path)


def test_codelist_rows_are_checked(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("system,code,display,category,source\nhttp://snomed.info/sct,1,x,,\n")
    with pytest.raises(RulesError, match=r"bad.csv:2: every code needs a source"):
        read_codelist("bad", bad)
    bad.write_text("system,code,display\n")
    with pytest.raises(RulesError, match=r"bad.csv:1: header must be"):
        read_codelist("bad", bad)


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        ("http://snomed.info/sct", " 751481000000104 ", "751481000000104"),
        ("http://hl7.org/fhir/sid/icd-10", "r52.2", "R522"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "M54.50", "M5450"),
        ("http://loinc.org", "la17956-6", "LA17956-6"),
    ],
)
def test_codes_match_despite_spaces_case_and_dots(system, code, expected):
    assert normalise(system, code) == (system, expected)


SECOND_RULESET = """\
id: back-pain-physio
version: 2.1.0
title: A different screen, to show rules are data
codelists:
  back: back.csv
  referral: referral.csv
exclusions:
  - reason: too-young
    rule: {id: age, kind: outside-age-range, min_age: 30, max_age: 50, state_pension_age: null}
criteria:
  - fail_reason: no-back-pain
    rule: {id: back-pain, kind: records, codelist: back, resource_types: [Condition],
           active_at_as_of: true, min_count: 1}
proposal:
  request_codelist: referral
  reason_criteria: [back-pain]
  pain_criterion: back-pain
  supporting_info: {id: none, kind: records, codelist: back, within_months: 1}
  patient_explanation: We suggest physiotherapy.
"""


def test_a_second_different_ruleset_needs_no_code(tmp_path: Path):
    (tmp_path / "back.csv").write_text(
        "system,code,display,category,source\n"
        "http://snomed.info/sct,279039007,Low back pain,,test\n"
    )
    (tmp_path / "referral.csv").write_text(
        "system,code,display,category,source\n"
        "http://snomed.info/sct,306109009,Referral to pain management service,,GM\n"
    )
    pin_directory(tmp_path)
    path = tmp_path / "back.yaml"
    path.write_text(SECOND_RULESET)
    ruleset = load_ruleset(path)
    index = CodeIndex(ruleset.codelists.values())

    def facts(birth: str, code: str) -> PatientFacts:
        info = extract_patient({"resourceType": "Patient", "id": "x", "birthDate": birth})
        condition = {
            "resourceType": "Condition",
            "id": "c",
            "subject": {"reference": "Patient/x"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "onsetDateTime": "2026-01-01",
        }
        record = extract_record(condition, index)
        records = (record,) if record else ()
        return PatientFacts(id=info.id, birth_date=info.birth_date, records=records)

    t = date(2026, 11, 26)
    proposed = evaluate(ruleset, facts("1980-01-01", "279039007"), t)
    assert proposed.outcome == "propose"
    # the old key `pain_criterion` still names the criterion the care plan addresses
    assert ruleset.model.proposal.addresses == "back-pain"
    assert proposed.links.addresses == ("Condition/c",)
    assert evaluate(ruleset, facts("1980-01-01", "82423001"), t).reasons == ("no-back-pain",)
    young = evaluate(ruleset, facts("2000-01-01", "279039007"), t)
    assert (young.outcome, young.reasons) == ("excluded", ("too-young",))
    assert young.ruleset == "back-pain-physio@2.1.0"


def test_old_slot_names_still_load():
    # priority.employment / fit_notes and proposal.pain_criterion were renamed latest /
    # also_starts / addresses (issue 12): rulesets written with the old names mean the same.
    data = yaml.safe_load(DEFAULT_RULESET.read_text())
    old = copy.deepcopy(data)
    old["priority"]["employment"] = old["priority"].pop("latest")
    old["priority"]["fit_notes"] = old["priority"].pop("also_starts")
    old["proposal"]["pain_criterion"] = old["proposal"].pop("addresses")
    assert Ruleset.model_validate(old) == Ruleset.model_validate(data)
    assert Ruleset.model_validate(data).priority.also_starts.codelist == "fit-notes"
