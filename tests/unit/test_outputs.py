"""Outputs: summary counts and attrition, the worklist, the HTML report (writing them:
test_output_writers.py)."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date
from html import unescape
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import pytest

import ips_screen
from ips_screen.engine import evaluate
from ips_screen.engine.decision import Decision, Links, Step
from ips_screen.facts.extract import CodeIndex, extract_patient, extract_record
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.evidence import (
    AgeEvidence,
    LatestCategoryEvidence,
    RecordEvidence,
    RecordsEvidence,
)
from ips_screen.outputs.formats.worklist_csv import write_worklist_csv
from ips_screen.outputs.report import render_report
from ips_screen.outputs.summary import summarise, worklist_frame
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset

AS_OF = date(2026, 11, 26)
EXCLUSIONS = ["deceased", "working-age", "end-of-life", "ips-referral-open", "ips-declined"]
CRITERIA = ["chronic-pain", "out-of-work"]
SCT = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset()


def trace(**changes: tuple[str, str | None, str]) -> tuple[Step, ...]:
    """Top-level steps in ruleset order, all passing unless changed: id=(status, reason,
    evidence)."""
    steps = []
    for step_id in EXCLUSIONS + CRITERIA:
        status, reason, evidence = changes.get(step_id.replace("-", "_"), ("pass", None, None))
        steps.append(Step(step_id, "x", status, (), evidence, (), reason))  # type: ignore[arg-type]
    return tuple(steps)


def decision(patient: str, outcome: str, reasons=(), *, flags=(), priority=None, quality=(), **tr):
    return Decision(
        patient=f"Patient/{patient}",
        outcome=outcome,  # type: ignore[arg-type]
        reasons=tuple(reasons),
        flags=tuple(flags),
        priority=priority,
        trace=trace(**tr),
        as_of=AS_OF.isoformat(),
        ruleset="ips-chronic-pain@1.0.0",
        links=Links(),
        quality=tuple(quality),
    )


def pain_evidence(display: str = "Chronic pain") -> RecordsEvidence:
    """'1 record(s) in chronic-pain (active): <display> (Condition/c1, 2025-01-01)'"""
    record = RecordEvidence("Condition/c1", date(2025, 1, 1), "", display)
    return RecordsEvidence("chronic-pain", 1, 1, (record,), True, None, None, None, None, "enough")


def work_evidence(category: str, result: str) -> LatestCategoryEvidence:
    """'latest evidence 2026-01-01: <category> (Observation/o1)'"""
    record = RecordEvidence("Observation/o1", date(2026, 1, 1), category)
    return LatestCategoryEvidence(date(2026, 1, 1), (record,), "x", result, True, 24, 0)  # type: ignore[arg-type]


PAIN = ("pass", None, pain_evidence())
WORK = ("pass", None, work_evidence("unemployed", "pass"))
NO_STATUS = LatestCategoryEvidence(None, (), None, "none", False, 24, 0)
UNKNOWN_WORK = ("fail", "employment-status-unknown", NO_STATUS)
NO_BIRTH = ("unknown", "birth-date-missing", AgeEvidence(None, "no-birth-date", 18, None))


@pytest.fixture
def decisions() -> list[Decision]:
    return [
        decision(
            "p2",
            "propose",
            flags=["employment-status-unconfirmed"],
            priority="routine",
            quality=["chronic-pain-no-employment-status"],
            chronic_pain=PAIN,
            out_of_work=WORK,
        ),
        decision("p1", "propose", priority="early", chronic_pain=PAIN, out_of_work=WORK),
        decision(
            "x1",
            "excluded",
            ["deceased", "end-of-life"],
            deceased=("fail", "deceased", None),
            end_of_life=("fail", "end-of-life", None),
        ),
        decision(
            "x2",
            "not-eligible",
            ["birth-date-missing", "employment-status-unknown"],
            quality=["chronic-pain-no-employment-status"],
            working_age=NO_BIRTH,
            out_of_work=UNKNOWN_WORK,
        ),
        decision(
            "x3",
            "excluded",
            ["ips-declined"],
            working_age=NO_BIRTH,
            ips_declined=("fail", "ips-declined", None),
        ),
        decision(
            "n1",
            "not-eligible",
            ["no-chronic-pain", "employment-status-unknown"],
            chronic_pain=("fail", "no-chronic-pain", None),
            out_of_work=UNKNOWN_WORK,
        ),
        decision(
            "n2",
            "not-eligible",
            ["in-work"],
            quality=["undated-employment-status"],
            out_of_work=("fail", "in-work", work_evidence("employed", "fail")),
        ),
    ]


def read_report(skipped: int = 3) -> dict:
    return {
        "files": 2,
        "resources": 40,
        "by_type": {"Patient": 7, "Condition": 12},
        "skipped_count": skipped,
        "skipped": [
            {"where": f"bundle.json entry {i}", "problem": "not JSON", "extra": 1}
            for i in range(skipped)
        ],
    }


def make_summary(decisions, ruleset, skipped: int = 3) -> dict:
    return summarise(
        decisions,
        ruleset,
        read_report=read_report(skipped),
        orphans={"Patient/gone": 3, "Patient/away": 2},
        unlinked=4,
        as_of=AS_OF,
    )


# --- summary ---------------------------------------------------------------------------------


def test_attrition_rows_add_up_and_end_at_the_proposals(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    rows = summary["attrition"]
    assert rows[0] == {"step": "all patients", "kept": 7}
    assert [r["step"] for r in rows[1:]] == EXCLUSIONS + CRITERIA
    assert [r["kind"] for r in rows[1:]] == ["exclusion"] * 5 + ["criterion"] * 2
    for before, row in pairwise(rows):
        assert row["kept"] == before["kept"] - row["removed"]
    removed = {r["step"]: r["removed"] for r in rows[1:]}
    # x3 (no birth date, and declined) is removed at working-age, the first step that stopped it.
    assert removed == {
        "deceased": 1,
        "working-age": 2,
        "end-of-life": 0,
        "ips-referral-open": 0,
        "ips-declined": 0,
        "chronic-pain": 1,
        "out-of-work": 1,
    }
    assert rows[-1]["kept"] == summary["outcomes"]["propose"] == 2
    assert sum(removed.values()) == summary["patients"] - summary["outcomes"]["propose"]


def test_every_reason_flag_outcome_and_priority_is_counted(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    expected = Counter(r for d in decisions for r in d.reasons)
    assert summary["reasons"] == dict(expected)
    assert list(summary["reasons"]) == sorted(expected)
    assert summary["flags"] == {"employment-status-unconfirmed": 1}
    assert summary["outcomes"] == {"excluded": 2, "not-eligible": 3, "propose": 2}
    assert summary["priority"] == {"early": 1, "routine": 1}
    assert summary["ruleset"] == "ips-chronic-pain@1.1.0"
    assert summary["as_of"] == "2026-11-26"
    assert summary["patients"] == 7


def test_all_outcome_keys_are_present_even_when_zero(decisions, ruleset):
    summary = make_summary(decisions[:1], ruleset)
    assert summary["outcomes"] == {"excluded": 0, "not-eligible": 0, "propose": 1}
    assert summary["priority"] == {"early": 0, "routine": 1}
    empty = make_summary([], ruleset)
    assert empty["attrition"][-1]["kept"] == 0
    assert empty["reasons"] == {} and empty["flags"] == {}


def test_data_quality_and_input(decisions, ruleset):
    summary = make_summary(decisions, ruleset, skipped=75)
    dq = summary["data_quality"]
    assert dq["chronic_pain_no_employment_status"] == 2
    assert dq["undated_employment_status"] == 1
    assert dq["birth_date_missing"] == 2  # x2 (not eligible) and x3 (excluded for another reason)
    assert dq["records_skipped"] == 75
    assert len(dq["skipped"]) == 50
    assert dq["skipped"][0] == {"where": "bundle.json entry 0", "problem": "not JSON"}
    assert dq["resources_for_absent_patients"] == 5
    assert dq["patients_absent"] == 2
    assert dq["resources_without_patient"] == 4
    assert summary["input"] == {
        "files": 2,
        "resources": 40,
        "by_type": {"Condition": 12, "Patient": 7},
    }


def test_summary_is_deterministic(decisions, ruleset):
    one = make_summary(decisions, ruleset)
    two = make_summary(list(reversed(decisions)), ruleset)
    assert json.dumps(one) == json.dumps(two)
    assert list(one) == sorted(one) and list(one["data_quality"]) == sorted(one["data_quality"])


@pytest.mark.slow
def test_summary_of_real_decisions(ruleset):
    """Decisions from the engine, on inline FHIR: the funnel agrees with the outcomes."""
    index = CodeIndex(ruleset.codelists.values())

    def facts(pid: str, birth: str | None, codes: list[tuple[str, str, str]]) -> PatientFacts:
        info = extract_patient({"resourceType": "Patient", "id": pid, "birthDate": birth})
        resources = [
            {
                "resourceType": rtype,
                "id": f"{pid}-{i}",
                "status": "final",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": SCT, "code": code}]},
                "onsetDateTime" if rtype == "Condition" else "effectiveDateTime": when,
            }
            for i, (rtype, code, when) in enumerate(codes)
        ]
        records = tuple(r for r in (extract_record(x, index) for x in resources) if r)
        return PatientFacts(id=pid, birth_date=info.birth_date, records=records)

    pain = ("Condition", "82423001", "2025-01-01")
    cases = [
        facts("a", "1980-01-01", [pain, ("Observation", "73438004", "2026-01-01")]),
        facts("b", "1980-01-01", [pain]),
        facts("c", None, [pain]),
        facts("d", "1950-01-01", []),
        facts("e", "1980-01-01", [pain, ("Observation", "160903007", "2026-01-01")]),
    ]
    real = [evaluate(ruleset, f, AS_OF) for f in cases]
    summary = make_summary(real, ruleset)
    assert summary["outcomes"] == {"excluded": 1, "not-eligible": 3, "propose": 1}
    assert summary["attrition"][-1]["kept"] == 1
    removed = {r["step"]: r["removed"] for r in summary["attrition"][1:]}
    assert removed["working-age"] == 2 and removed["out-of-work"] == 2
    assert summary["data_quality"]["birth_date_missing"] == 1
    assert summary["data_quality"]["chronic_pain_no_employment_status"] == 2
    frame = worklist_frame(real)
    assert list(frame["patient"]) == ["Patient/a"]
    assert "unemployed (Observation/a-1)" in frame["reason"][0]


# --- worklist --------------------------------------------------------------------------------


def test_worklist_lists_proposed_patients_early_first(decisions, tmp_path):
    path = tmp_path / "worklist.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_worklist_csv(decisions, handle)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patient"] for r in rows] == ["Patient/p1", "Patient/p2"]
    assert [r["priority"] for r in rows] == ["early", "routine"]
    assert rows[1]["flags"] == "employment-status-unconfirmed"
    assert rows[0]["reason"].startswith("chronic-pain: 1 record(s) in chronic-pain")
    assert "out-of-work: latest evidence 2026-01-01: unemployed" in rows[0]["reason"]
    assert b"\r" not in path.read_bytes()


def test_empty_worklist_has_a_header(tmp_path):
    path = tmp_path / "worklist.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_worklist_csv([], handle)
    assert path.read_text(encoding="utf-8") == "patient,priority,flags,reason\n"


# --- report ----------------------------------------------------------------------------------


class TagBalance(HTMLParser):
    VOID = frozenset(
        {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def svgs(html: str) -> list[ET.Element]:
    found, start = [], 0
    while (i := html.find("<svg", start)) >= 0:
        end = html.index("</svg>", i) + len("</svg>")
        found.append(ET.fromstring(html[i:end]))
        start = end
    return found


def test_a_report_template_compiled_by_an_earlier_run_gives_the_same_page(
    decisions, ruleset, tmp_path
):
    """The nightly job keeps the compiled template in its private state folder; a later process
    loads it from there (and one whose source changed would be compiled again: Jinja's
    checksum)."""
    from ips_screen.outputs import report

    summary = make_summary(decisions, ruleset)
    fresh = render_report(summary, decisions, ruleset)
    kept = tmp_path / "state" / "templates"
    pages = []
    for _ in range(2):  # a run that compiles and keeps it, then a run that loads it
        report._environment.cache_clear()  # a new process
        pages.append(render_report(summary, decisions, ruleset, cache_dir=kept))
    assert pages == [fresh, fresh]
    (compiled,) = kept.iterdir()
    assert kept.stat().st_mode & 0o777 == 0o700 and compiled.stat().st_mode & 0o077 == 0
    compiled.write_bytes(b"not a compiled template")  # damaged: compiled again, not trusted
    report._environment.cache_clear()
    assert render_report(summary, decisions, ruleset, cache_dir=kept) == fresh


def test_report_renders_a_complete_page(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    html = render_report(summary, decisions, ruleset)
    assert html.lstrip().startswith("<!DOCTYPE html>") and "</html>" in html
    assert "{{" not in html and "{%" not in html
    assert ruleset.model.title in html and "records up to <strong>26 November 2026" in html
    assert "2026-11-26" not in html  # dates as people read them
    assert f"ips-screen {ips_screen.__version__}" in html and "ips-chronic-pain@1.1.0" in html
    parser = TagBalance()
    parser.feed(html)
    assert parser.errors == [] and parser.stack == []
    (funnel,) = svgs(html)  # well-formed XML; no trends chart unless asked for
    ns = "{http://www.w3.org/2000/svg}"
    assert funnel.get("role") == "img"
    assert funnel.find(f"{ns}title") is not None and funnel.find(f"{ns}desc") is not None
    assert len(funnel.findall(f"{ns}rect")) == len(summary["attrition"])
    widths = [float(r.get("width")) for r in funnel.findall(f"{ns}rect")]
    assert widths == sorted(widths, reverse=True) and widths[-1] == pytest.approx(
        widths[0] * 2 / 7, abs=0.1
    )
    assert "<table" in html and "Patients removed and still in the screen" in html
    assert html.index("Patient/p1") < html.index("Patient/p2")  # early first
    assert "chronic pain but no recorded employment status" in html.lower()
    assert "bundle.json entry 2" in html
    assert "<script" not in html and "http://" not in html.replace(
        '"http://www.w3.org/2000/svg"', ""
    )


def test_report_escapes_hostile_text(decisions, ruleset):
    hostile = '<script>alert("x")</script>'
    decisions = [
        *decisions,
        decision(
            "evil",
            "propose",
            priority="early",
            chronic_pain=("pass", None, pain_evidence(hostile)),
            out_of_work=WORK,
        ),
    ]
    summary = make_summary(decisions, ruleset)
    summary["data_quality"]["skipped"].append({"where": hostile, "problem": hostile})
    html = render_report(summary, decisions, ruleset, explain=lambda name: hostile)
    assert "<script" not in html
    assert "&lt;script&gt;" in html


def test_report_uses_explanations(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    html = render_report(summary, decisions, ruleset, explain=lambda name: f"MEANS {name}")
    assert "MEANS no-chronic-pain" in html and "MEANS employment-status-unconfirmed" in html
    default = render_report(summary, decisions, ruleset)
    assert "no chronic pain recorded" in default


def test_report_trends_chart(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    trends = [
        {
            "run": f"run-{i}",
            "as_of": f"2026-11-{20 + i}",
            "propose": 2 + i,
            "not_eligible": 5,
            "excluded": 1,
            "open_proposals": i,
        }
        for i in range(4)
    ]
    html = render_report(summary, decisions, ruleset, trends=trends)
    charts = svgs(html)
    assert len(charts) == 2
    assert len(charts[1].findall("{http://www.w3.org/2000/svg}polyline")) == 4
    assert "Outcomes by run" in html and "run-3" in html
    one = render_report(summary, decisions, ruleset, trends=trends[:1])
    assert len(svgs(one)) == 2
    assert "No earlier runs" in render_report(summary, decisions, ruleset, trends=[])


def test_template_ships_inside_the_package():
    import ips_screen.outputs

    assert (Path(ips_screen.outputs.__file__).parent / "templates" / "report.html.j2").is_file()


def _codes(ruleset) -> set[str]:
    """Names the engine uses that a practice manager should never read."""
    model = ruleset.model
    names = {e.reason for e in model.exclusions} | {e.rule.id for e in model.exclusions}
    names |= {c.rule.id for c in model.criteria} | {c.fail_reason for c in model.criteria}
    names |= set(model.texts.flags) | set(model.texts.reasons)
    return {n for n in names if n and "-" in n} - {"end-of-life"}  # English: end-of-life care


def _visible(html: str) -> str:
    """The page's text, without its style sheet and the ruleset's own tag."""
    body = html.split("<body>", 1)[1]
    text = unescape(re.sub(r"<[^>]+>", " ", body)).replace("ips-chronic-pain@1.1.0", "")
    return " ".join(text.split())


def test_report_speaks_plain_words_on_a_phone(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    html = render_report(summary, decisions, ruleset)
    text = _visible(html)
    for code in _codes(ruleset):
        assert code not in text, code
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media (max-width: 40rem)" in html and 'class="scroll"' in html
    (funnel,) = svgs(html)
    labels = [t.text for t in funnel.iter("{http://www.w3.org/2000/svg}text")]
    assert labels[0] == "All patients screened"
    assert "After the age check" in labels and "After the work check" in labels
    assert all(
        re.fullmatch(r"[\d,]+ still in, [\d,]+ removed", label)
        for label in labels[3::2]  # after the first row: label, counts, label, counts...
    ), labels
    assert "Patients still in the screen after each check" in html
    assert "Removed if recorded as deceased" in text
    assert "confirm employment status" in text  # what a flagged proposal asks, in words
    assert "Next:" in text  # data-quality items say what to do
    one = make_summary(decisions[:1], ruleset)
    assert "1 patient screened" in _visible(render_report(one, decisions[:1], ruleset))
    assert "patients screened" in text


def test_the_nightly_report_leads_with_the_work_outstanding(decisions, ruleset):
    summary = make_summary(decisions, ruleset)
    summary["reasons"]["ips-referral-open"] = 5
    work = {
        "open": 3,
        "longest_days": 1,
        "over_two_weeks": 0,
        "new": 1,
        "since": "2026-07-01T23:30+00:00",  # 00:30 in London, a day later
        "since_run": True,
        "accepted": 1,
        "declined": 0,
        "deferred": 2,
    }
    html = render_report(summary, decisions, ruleset, trends=[], work=work)
    text = " ".join(_visible(html).split())
    assert html.index('id="h-work"') < html.index('id="h-headline"')
    assert "3 proposals are waiting for a clinician's review (the longest for 1 day;" in text
    assert "1 new proposal tonight." in text
    decided = "1 accepted, 0 declined and 2 deferred"
    assert f"Decided since the last run began (2 July 2026 at 00:30): {decided}" in text
    assert "Already referred, or referred recently: 2 patients" in text
    assert "a proposal for them is waiting for a clinician's review 3" in text
    assert "already has an open or recently completed IPS referral 2" in text
    assert "Changes read tonight" in text and "Records read" not in text
    assert "Changes read tonight" not in _visible(render_report(summary, decisions, ruleset))
    first = {**work, "since_run": False}
    text = " ".join(_visible(render_report(summary, decisions, ruleset, work=first)).split())
    assert f"in the week before this first run (since 2 July 2026 at 00:30): {decided}" in text
