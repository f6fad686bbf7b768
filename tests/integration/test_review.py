"""Clinician review of proposals (ips_screen.writeback.review and `ips-screen review`) against the
real FHIR server: list, show, accept, decline, stale versions, and the re-screen after a decline.

Each test loads its own patient (unique ids: the server is shared by the session), PUTs the
patient's records so the proposal's references resolve, and posts the proposal transaction the
screen would write. An unknown Task id is a usage error: exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.codes import DECLINE_REASON_SYSTEM
from ips_screen.dates import LONDON, add_months
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.engine import evaluate
from ips_screen.errors import OUTPUT_CLOSED, AlreadyDecided, ConflictError, UserError
from ips_screen.fhir.client import FhirClient
from ips_screen.sources import collect_resources
from ips_screen.writeback import review
from tests.fhir_support import IPS_SERVICE, Proposed, load_proposed_patient, put_people, search
from tests.helpers import AS_OF, default_ruleset
from tests.support.closed_pipe import run_into_closed_pipe

DECLINE_REASONS = default_ruleset().model.proposal.decline_reasons

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
LATER = NOW + timedelta(hours=2)
DR = "Practitioner/dr-review"
COUNTED = ("ServiceRequest", "CarePlan", "Task", "Provenance")


def snapshot(client: FhirClient, proposed: Proposed) -> dict[str, object]:
    """Counts of what review writes, and the Task's and proposal's versions."""
    out: dict[str, object] = {t: len(search(client, t)) for t in COUNTED}
    out["task"] = client.read("Task", proposed.task_id)[1]
    out["proposal"] = client.read("ServiceRequest", proposed.sr_id)[1]
    return out


@pytest.fixture
def propose(fhir_client: FhirClient) -> Callable[..., Proposed]:
    put_people(fhir_client, DR)

    def make(*, missing: tuple[str, ...] = ()) -> Proposed:
        return load_proposed_patient(fhir_client, "rv", now=NOW, missing=missing)

    return make


def test_open_reviews_lists_the_proposal(fhir_client: FhirClient, propose):
    proposed = propose()
    items = {i.task_id: i for i in review.open_reviews(fhir_client)}
    item = items[proposed.task_id]
    assert item.proposal == f"ServiceRequest/{proposed.sr_id}"
    assert item.patient == f"Patient/{proposed.pid}"
    assert item.priority == "early"
    assert item.reason.startswith("Offer IPS: chronic pain and out of work")
    assert item.owner == f"Practitioner/gp-{proposed.pid}"
    assert item.authored is not None and item.authored.startswith("2026-11-26")

    owned = review.open_reviews(fhir_client, owner=f"Practitioner/gp-{proposed.pid}")
    assert [i.task_id for i in owned] == [proposed.task_id]
    routine = review.open_reviews(fhir_client, priority="routine")
    assert proposed.task_id not in {i.task_id for i in routine}
    listed = review.open_reviews(fhir_client)  # early first, then oldest waiting first
    keys = [(i.priority != "early", i.authored or "") for i in listed]
    assert keys == sorted(keys)


def test_review_detail_shows_evidence_and_fit_notes(fhir_client: FhirClient, propose):
    proposed = propose()
    detail = review.review_detail(fhir_client, f"Task/{proposed.task_id}")
    assert detail.item.task_id == proposed.task_id
    assert [(e.ref, e.status, e.date) for e in detail.pain] == [
        (proposed.ref("Condition", "pain"), "active", "2025-01-15")
    ]
    assert [(e.ref, e.date, e.found) for e in detail.employment] == [
        (proposed.ref("Observation", "emp"), "2026-06-01", True)
    ]
    assert [(e.ref, e.date, e.fitness) for e in detail.fit_notes] == [
        (proposed.ref("Observation", "fit1"), "2026-05-01", "not-fit"),
        (proposed.ref("DocumentReference", "fit2"), "2026-08-01", "may-be-fit"),
    ]
    assert detail.not_found == []
    assert "Chronic pain" in detail.clinician_note
    assert "voluntary" in detail.patient_explanation.lower()


def test_review_detail_lists_missing_records_as_not_found(fhir_client: FhirClient, propose):
    proposed = propose(missing=("emp", "fit2"))
    detail = review.review_detail(fhir_client, proposed.task_id)
    assert [(e.ref, e.found) for e in detail.not_found] == [
        (proposed.ref("Observation", "emp"), False)
    ]
    assert [(e.ref, e.found) for e in detail.fit_notes] == [
        (proposed.ref("Observation", "fit1"), True),
        (proposed.ref("DocumentReference", "fit2"), False),
    ]


def test_accept_writes_order_careplan_and_provenance(fhir_client: FhirClient, propose):
    proposed = propose()
    before = snapshot(fhir_client, proposed)
    done = review.accept(
        fhir_client,
        proposed.task_id,
        by=DR,
        now=LATER,
        tool_version=__version__,
        ips_service=IPS_SERVICE,
        patient_agreed=True,
        ruleset=default_ruleset(),
    )
    after = snapshot(fhir_client, proposed)
    added = {t: after[t] - before[t] for t in COUNTED}  # type: ignore[operator]
    assert added == {"ServiceRequest": 1, "CarePlan": 1, "Task": 0, "Provenance": 1}

    proposal = f"ServiceRequest/{proposed.sr_id}"
    (order,) = search(fhir_client, "ServiceRequest", {"based-on": proposal})
    assert (order["intent"], order["status"]) == ("order", "active")
    assert f"ServiceRequest/{order['id']}" == done.order
    assert order["requester"]["reference"] == DR
    (careplan,) = search(fhir_client, "CarePlan", {"subject": f"Patient/{proposed.pid}"})
    assert f"CarePlan/{careplan['id']}" == done.careplan
    assert [a["reference"] for a in careplan["addresses"]] == [proposed.ref("Condition", "pain")]
    assert careplan["activity"][0]["reference"]["reference"] == done.order
    assert [s["reference"] for s in careplan["supportingInfo"]] == [
        proposed.ref("Observation", "fit1"),
        proposed.ref("DocumentReference", "fit2"),
    ]
    task, _ = fhir_client.read("Task", proposed.task_id)
    assert task["status"] == "completed"
    assert fhir_client.read("ServiceRequest", proposed.sr_id)[0]["status"] == "completed"
    signed = [
        p
        for p in search(fhir_client, "Provenance", {"target": f"Task/{proposed.task_id}"})
        if any(a["who"].get("reference") == DR for a in p["agent"])
    ]
    assert len(signed) == 1
    assert f"Provenance/{signed[0]['id']}" == done.provenance
    assert proposed.task_id not in {i.task_id for i in review.open_reviews(fhir_client)}

    with pytest.raises(
        AlreadyDecided, match=r"^Dr A Smith accepted this on 26 November 2026 at 11:30\.$"
    ):
        review.accept(
            fhir_client, proposed.task_id, by=DR, now=LATER, tool_version=__version__,
            ips_service=IPS_SERVICE, patient_agreed=True,
        )  # fmt: skip
    assert snapshot(fhir_client, proposed) == after


def test_decline_then_rescreen(fhir_client: FhirClient, propose):
    proposed = propose()
    before = snapshot(fhir_client, proposed)
    done = review.decline(
        fhir_client,
        proposed.task_id,
        by=DR,
        reason_code="not-interested",
        note="Would rather wait until after surgery.",
        now=LATER,
        tool_version=__version__,
    )
    after = snapshot(fhir_client, proposed)
    added = {t: after[t] - before[t] for t in COUNTED}  # type: ignore[operator]
    assert added == {"ServiceRequest": 0, "CarePlan": 0, "Task": 0, "Provenance": 1}
    task, _ = fhir_client.read("Task", proposed.task_id)
    assert task["status"] == "rejected"
    assert task["statusReason"]["coding"][0] == {
        "system": DECLINE_REASON_SYSTEM,
        "code": "not-interested",
        "display": DECLINE_REASONS["not-interested"],
    }
    assert task["note"][-1]["text"] == "Would rather wait until after surgery."
    assert fhir_client.read("ServiceRequest", proposed.sr_id)[0]["status"] == "revoked"
    (signed,) = [
        p
        for p in search(fhir_client, "Provenance", {"target": f"Task/{proposed.task_id}"})
        if any(a["who"].get("reference") == DR for a in p["agent"])
    ]
    assert f"Provenance/{signed['id']}" == done.provenance

    with pytest.raises(AlreadyDecided, match=r"declined this on 26 November 2026 at 11:30: "):
        review.decline(
            fhir_client, proposed.task_id, by=DR, reason_code="not-now", now=LATER,
            tool_version=__version__,
        )  # fmt: skip
    assert snapshot(fhir_client, proposed) == after

    # Re-screen from what the server holds now: suppressed for 12 months, then offered again.
    subject = {"subject": f"Patient/{proposed.pid}"}
    resources = [fhir_client.read("Patient", proposed.pid)[0]]
    for rtype in ("Condition", "Observation", "DocumentReference", "ServiceRequest"):
        resources += search(fhir_client, rtype, subject)
    resources += search(fhir_client, "Task", {"patient": f"Patient/{proposed.pid}"})
    ruleset = default_ruleset()
    facts = collect_resources(resources, ruleset).patients[proposed.pid]
    now_decision = evaluate(ruleset, facts, AS_OF)
    assert (now_decision.outcome, now_decision.reasons[0]) == ("excluded", "ips-declined")
    later: date = add_months(AS_OF, 13)
    assert evaluate(ruleset, facts, later).outcome == "propose"


def test_decline_refuses_bad_reasons_before_writing(fhir_client: FhirClient, propose):
    proposed = propose()
    before = snapshot(fhir_client, proposed)
    with pytest.raises(UserError, match="not-interested, already-supported, not-now"):
        review.decline(
            fhir_client, proposed.task_id, by=DR, reason_code="bored", now=LATER,
            tool_version=__version__,
        )  # fmt: skip
    with pytest.raises(UserError, match="'other' needs --note"):
        review.decline(
            fhir_client, proposed.task_id, by=DR, reason_code="other", note=" ", now=LATER,
            tool_version=__version__,
        )  # fmt: skip
    with pytest.raises(UserError, match="by must be Practitioner"):
        review.decline(
            fhir_client, proposed.task_id, by="Patient/x", reason_code="not-now", now=LATER,
            tool_version=__version__,
        )  # fmt: skip
    assert snapshot(fhir_client, proposed) == before


def test_stale_task_version_conflicts_and_changes_nothing(fhir_client: FhirClient, propose):
    proposed = propose()
    loaded = review.load_review(fhir_client, proposed.task_id)
    changed = dict(loaded.task, note=[{"text": "Phoned the patient."}])
    fhir_client.update(changed, if_match=loaded.task["meta"]["versionId"])  # someone else
    before = snapshot(fhir_client, proposed)
    message = (
        rf"^Task/{proposed.task_id} was changed by someone else since it was read; nothing was "
        rf"changed\. Run `ips-screen review show {proposed.task_id}` and try again\.$"
    )
    with pytest.raises(ConflictError, match=message):
        review.accept(
            fhir_client, loaded, by=DR, now=LATER, tool_version=__version__,
            ips_service=IPS_SERVICE, patient_agreed=True,
        )  # fmt: skip
    assert snapshot(fhir_client, proposed) == before
    assert not search(
        fhir_client, "ServiceRequest", {"based-on": f"ServiceRequest/{proposed.sr_id}"}
    )
    assert fhir_client.read("Task", proposed.task_id)[0]["status"] == "requested"


def test_stale_proposal_version_conflicts_on_decline(fhir_client: FhirClient, propose):
    proposed = propose()
    loaded = review.load_review(fhir_client, proposed.task_id)
    fhir_client.update(dict(loaded.proposal, priority="urgent"))  # someone else
    before = snapshot(fhir_client, proposed)
    with pytest.raises(ConflictError, match="was changed by someone else"):
        review.decline(
            fhir_client, loaded, by=DR, reason_code="not-now", now=LATER, tool_version=__version__
        )
    assert snapshot(fhir_client, proposed) == before


def test_unknown_task(fhir_client: FhirClient):
    with pytest.raises(UserError, match=r"^Task/no-such-task not found on the FHIR server$"):
        review.review_detail(fhir_client, "Task/no-such-task")
    with pytest.raises(UserError, match="not a Task id"):
        review.load_review(fhir_client, "Patient/x")


# --- the command line --------------------------------------------------------------------------


def practice_toml(folder: Path, url: str, service: str | None = IPS_SERVICE) -> str:
    """A practice.toml for the server at `url`, with [referral] ips_service unless None."""
    path = folder / "practice.toml"
    referral = f'[referral]\nips_service = "{service}"\n' if service else ""
    path.write_text(
        f'[source]\nkind = "server"\n[fhir]\nbase_url = "{url}"\n'
        f'[output]\nstate_dir = "{folder / "state"}"\n{referral}',
        encoding="utf-8",
    )
    return str(path)


def test_cli_list_show_accept(fhir_server: FhirTestServer, propose, capsys, tmp_path: Path):
    proposed = propose()
    url = fhir_server.base_url
    owner = f"Practitioner/gp-{proposed.pid}"
    assert main(["review", "list", "--server", url, "--owner", owner]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "TASK", "SINCE", "PRIORITY", "NAME", "BORN", "NHS", "NUMBER", "PATIENT", "REASON",
    ]  # fmt: skip
    assert lines[1].split()[:3] == [f"Task/{proposed.task_id}", "2026-11-26", "early"]
    assert f"Patient/{proposed.pid}" in lines[1] and "1980-01-01 (46 y)" in lines[1]
    assert "Offer IPS" in lines[1]
    assert lines[-1].startswith("1 open; in the last 30 days: ")

    env = {"IPS_SCREEN_FHIR_BASE": url}
    assert main(["review", "list", "--json", "--priority", "early"], environ=env) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert proposed.task_id in {i["task_id"] for i in listed}

    assert main(["review", "show", proposed.task_id, "--server", url]) == 0
    out = capsys.readouterr().out
    for heading in ("Why", "Chronic pain", "Employment", "Fit notes timeline", "For the patient"):
        assert f"\n{heading}\n" in out
    assert proposed.ref("Condition", "pain") in out
    fit1 = proposed.ref("Observation", "fit1")
    assert f"  - Fit note: not fit for work, 1 May 2026 ({fit1}): eMED3" in out

    done = run_into_closed_pipe("review", "show", proposed.task_id, "--server", url)  # | head
    assert (done.returncode, done.stderr) == (OUTPUT_CLOSED, b"")

    assert main(["review", "show", proposed.task_id, "--json"], environ=env) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["item"]["task_id"] == proposed.task_id

    config = practice_toml(tmp_path, url)
    args = ["review", "accept", f"Task/{proposed.task_id}", "--by", DR, "--server", url]
    assert main([*args, "--config", config]) == 2  # the patient's agreement is not confirmed
    assert "--patient-agreed" in capsys.readouterr().err
    assert main([*args, "--patient-agreed"]) == 4  # no IPS service configured
    assert "[referral] ips_service" in capsys.readouterr().err
    args += ["--patient-agreed", "--config", config]
    assert main(args) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"Accepted Task/{proposed.task_id}: referral ServiceRequest/")
    assert "(urgent) to Test IPS employment service (fictional)" in out
    assert "CarePlan/" in out and "Observation/" in out and f"records {DR}" in out
    assert "\n" not in out

    assert main(args) == 6  # already decided: who did what and when
    err = capsys.readouterr().err.strip()
    assert err == "ips-screen: error: Dr A Smith accepted this on 26 November 2026 at 09:30."


def test_cli_decline_and_errors(fhir_server: FhirTestServer, propose, capsys):
    proposed = propose()
    url = fhir_server.base_url
    base = ["review", "decline", proposed.task_id, "--by", DR, "--server", url]
    assert main([*base, "--reason", "other"]) == 2
    assert "'other' needs --note" in capsys.readouterr().err
    assert main([*base, "--reason", "already-supported"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(
        f"Declined Task/{proposed.task_id} (Patient already receiving employment support): not "
        "suggested again for 12 months, until 26 November 2027."
    )
    assert f"ServiceRequest/{proposed.sr_id} revoked" in out
    # not-now defers by the ruleset's own window (3 months), as the screen will apply it
    later = propose()
    assert main([*base[:2], later.task_id, *base[3:], "--reason", "not-now"]) == 0
    out = capsys.readouterr().out
    assert "deferred until 26 February 2027, then IPS is suggested again" in out
    assert f"ServiceRequest/{later.sr_id} revoked" in out

    assert main(["review", "show", "Task/no-such-task", "--server", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ips-screen: error: Task/no-such-task not found on the FHIR server"]
    assert main(["review", "list"], environ={}) == 2
    assert capsys.readouterr().err.strip() == (
        "ips-screen: error: no FHIR server: pass --server or set IPS_SCREEN_FHIR_BASE"
    )
    # the reasons are the ruleset's (proposal.decline_reasons): an unknown one is a user error
    bored = ["review", "decline", proposed.task_id, "--by", DR, "--reason", "bored"]
    assert main([*bored, "--server", url]) == 2
    assert capsys.readouterr().err.startswith(
        "ips-screen: error: unknown decline reason 'bored'; use one of: not-interested, "
    )


def test_a_task_for_another_patient_than_its_proposal_is_refused(
    fhir_client: FhirClient, fhir_server: FhirTestServer, propose, capsys, tmp_path: Path
):
    a, b = propose(), propose()
    task = fhir_client.read("Task", a.task_id)[0]
    stray = {k: v for k, v in task.items() if k not in ("meta", "identifier")}
    stray.update(id=f"{a.pid}-stray", **{"for": {"reference": f"Patient/{b.pid}"}})
    fhir_client.update(stray)  # B's review, focused on A's proposal
    before = [snapshot(fhir_client, p) for p in (a, b)]
    refused = f"Task/{stray['id']} is not for the Patient of ServiceRequest/{a.sr_id}"

    url = fhir_server.base_url
    accept = ["accept", "--patient-agreed", "--config", practice_toml(tmp_path, url)]
    for action in (accept, ["decline", "--reason", "not-now"]):
        args = ["review", action[0], stray["id"], *action[1:], "--by", DR, "--server", url]
        assert main(args) == 2
        assert capsys.readouterr().err.strip() == f"ips-screen: error: {refused}"
    assert [snapshot(fhir_client, p) for p in (a, b)] == before
    assert stray["id"] not in {i.task_id for i in review.open_reviews(fhir_client)}
    with pytest.raises(review.NotThisReview, match=refused):
        review.load_review(fhir_client, stray["id"])
    assert fhir_client.read("Task", stray["id"])[0]["status"] == "requested"


def test_review_work_counts_open_reviews_and_the_decisions_since_a_time(
    fhir_client: FhirClient, propose
):
    """What leads the nightly report: the open reviews as `review list` counts them, and the
    reviews decided since a time (by lastModified) as accepted, deferred ("not now") or declined."""
    from ips_screen.presentation.labels import deferring_reasons
    from ips_screen.writeback.review_read import review_work

    ruleset = default_ruleset()
    decided_at = datetime(2027, 3, 1, 10, 0, tzinfo=LONDON)  # after every other test's decisions
    accepted, deferred, declined, waiting = (propose() for _ in range(4))
    put_people(fhir_client, DR)
    review.accept(
        fhir_client, accepted.task_id, by=DR, now=decided_at, tool_version=__version__,
        ruleset=ruleset, ips_service=IPS_SERVICE, patient_agreed=True,
    )  # fmt: skip
    for proposed, reason in ((deferred, "not-now"), (declined, "not-interested")):
        review.decline(
            fhir_client, proposed.task_id, by=DR, reason_code=reason, now=decided_at,
            tool_version=__version__,
        )  # fmt: skip
    work = review_work(fhir_client, decided_at - timedelta(hours=1), deferring_reasons(ruleset))
    assert (work.accepted, work.deferred, work.declined) == (1, 1, 1)
    assert waiting.task_id in {i.task_id for i in work.open}
    assert [i.task_id for i in work.open] == [i.task_id for i in review.open_reviews(fhir_client)]
    later = review_work(fhir_client, decided_at + timedelta(hours=1), deferring_reasons(ruleset))
    assert (later.accepted, later.deferred, later.declined) == (0, 0, 0)
