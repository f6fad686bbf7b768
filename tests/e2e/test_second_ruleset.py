"""A second, different ruleset (tests/rulesets/smoking: stop-smoking support for adults who
smoke) runs end to end, and none of its outputs speak of the default ruleset's IPS, pain, fit
notes or employment: nothing clinical about the default ruleset is held in Python."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.presentation.labels import care_plan_words
from ips_screen.proposals.build import build_proposal
from ips_screen.proposals.review import accept_resources, decline_resources
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.service.cards import build_card, by_ref
from tests.helpers import decide, patient
from tests.support.paths import FROZEN_NOW
from tests.support.second_ruleset import (
    EX_SMOKER,
    SMOKER,
    SMOKING,
    assert_clean,
    smoking_status,
)


def _bundle(*resources: dict) -> bytes:
    entries = [{"resource": r} for r in resources]
    return orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})


def inline_patients(folder: Path) -> None:
    folder.mkdir()
    people = {
        "smoker": [patient("smoker"), smoking_status(SMOKER, "smoker")],
        "smoker-old": [patient("smoker-old", "1950-03-01"), smoking_status(SMOKER, "smoker-old")],
        "ex-smoker": [patient("ex-smoker"), smoking_status(EX_SMOKER, "ex-smoker")],
        "smoker-2023": [
            patient("smoker-2023"),
            smoking_status(SMOKER, "smoker-2023", "2023-01-10"),
        ],
        "teen": [patient("teen", "2010-01-01"), smoking_status(SMOKER, "teen")],
        "unknown": [patient("unknown")],
    }
    for pid, resources in people.items():
        (folder / f"{pid}.json").write_bytes(_bundle(*resources))


def test_a_second_ruleset_screens_end_to_end_without_the_default_rulesets_words(
    capsys, tmp_path: Path
):
    inline_patients(tmp_path / "in")
    out = tmp_path / "out"
    args = ["screen", str(tmp_path / "in"), "--rules", str(SMOKING), "--as-of", "2026-11-26"]
    code = main([*args, "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err

    decisions = {
        d["patient"]: d
        for d in map(orjson.loads, (out / "decisions.ndjson").read_bytes().splitlines())
    }
    assert {p: (d["outcome"], d["reasons"]) for p, d in decisions.items()} == {
        "Patient/smoker": ("propose", []),
        "Patient/smoker-old": ("propose", []),  # no upper age: State Pension age plays no part
        "Patient/ex-smoker": ("not-eligible", ["not-smoking"]),
        "Patient/smoker-2023": ("propose", []),  # an old record still passes; the note asks
        "Patient/teen": ("excluded", ["under-18"]),
        "Patient/unknown": ("not-eligible", ["smoking-status-unknown"]),
    }
    bundle = orjson.loads((out / "proposals.json").read_bytes())
    requests = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert sorted(r["subject"]["reference"] for r in requests) == [
        "Patient/smoker",
        "Patient/smoker-2023",
        "Patient/smoker-old",
    ]
    notes = {r["subject"]["reference"]: r["note"][0]["text"] for r in requests}
    assert notes["Patient/smoker-2023"].startswith("Smoking status last recorded ")
    assert "please confirm" in notes["Patient/smoker-2023"]
    assert "please confirm" not in notes["Patient/smoker"]
    assert "Priority" not in notes["Patient/smoker"]  # the ruleset has no priority
    assert {c["code"] for r in requests for c in r["code"]["coding"]} == {"871661000000106"}
    assert "stop-smoking support" in (out / "report.html").read_text().lower()

    outputs = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in outputs} >= {
        "decisions.ndjson",
        "proposals.json",
        "report.html",
        "worklist.csv",
    }
    for path in outputs:
        assert_clean(path.name, path.read_text(encoding="utf-8", errors="replace"))


def test_the_second_rulesets_card_and_decline_speak_its_own_words():
    smoking = load_ruleset(SMOKING)
    resources = [patient("smoker"), smoking_status(SMOKER, "smoker")]
    decision = decide(resources, ruleset=smoking, patient_id="smoker")
    assert decision.outcome == "propose"
    live = build_card(
        smoking, "smoker", by_ref(resources), decision=decision, pending=None, review_url=None
    )
    card = live.card
    assert card["summary"] == "Consider Stop-smoking support"
    assert [r["code"] for r in card["overrideReasons"]] == ["not-ready", "has-support", "other"]
    assert_clean("card", orjson.dumps(card).decode())

    written = build_proposal(decision, smoking, now=FROZEN_NOW, tool_version="1")
    [sr] = [r | {"id": "sr1"} for r in written if r["resourceType"] == "ServiceRequest"]
    [task] = [
        r | {"id": "t1", "focus": {"reference": "ServiceRequest/sr1"}}
        for r in written
        if r["resourceType"] == "Task"
    ]
    assert_clean("proposal", orjson.dumps(written).decode())
    reasons = smoking.model.proposal.decline_reasons
    declined = decline_resources(
        sr,
        task,
        by="Practitioner/d",
        reason_code="not-ready",
        reasons=reasons,
        now=FROZEN_NOW,
        tool_version="1",
    )
    assert declined["task"]["statusReason"]["text"] == "Not ready to stop at present"
    with pytest.raises(ValueError, match="use one of: not-ready, has-support, other"):
        decline_resources(
            sr,
            task,
            by="Practitioner/d",
            reason_code="not-interested",
            reasons=reasons,
            now=FROZEN_NOW,
            tool_version="1",
        )
    accepted = accept_resources(
        sr,
        task,
        by="Practitioner/d",
        now=FROZEN_NOW,
        tool_version="1",
        pain_conditions=[],
        fit_notes=[],
        ips_service="HealthcareService/stop-smoking",
        patient_agreed=True,
        care_plan=care_plan_words(smoking),
    )
    assert accepted["careplan"]["title"] == "Stop-smoking support"
    assert_clean("accept and decline", orjson.dumps([declined, accepted]).decode())
