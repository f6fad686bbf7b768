"""`ips-screen review followup` against the real FHIR server: the IPS orders made on acceptance
that are still active with no Task, Communication or status change from the IPS service after N
weeks are listed (ids and ages only); an answered one, a younger one and an order this tool did
not make are not.

The server is shared by the session, so the tests look for their own orders in the list, never
at its length. The clock is the suite's frozen one, moved forward with `frozen_clock.move_to`.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.store.state import StateStore
from ips_screen.writeback import review
from ips_screen.writeback.followup import unanswered_referrals
from tests.fhir_support import load_proposed_patient, running_test_server
from tests.helpers import default_ruleset

pytestmark = pytest.mark.integration

ACCEPTED = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
DR = "Practitioner/dr-followup"
SERVICE = "Organization/ips-service"


def _accepted_order(client: FhirClient, accepted: datetime = ACCEPTED) -> tuple[str, str, str]:
    """A proposal accepted at `accepted`: (order "ServiceRequest/<id>", proposal, patient)."""
    proposed = load_proposed_patient(client, "fu", now=accepted)
    done = review.accept(
        client,
        proposed.task_id,
        by=DR,
        now=accepted,
        tool_version=__version__,
        ruleset=default_ruleset(),
    )
    return done.order, done.proposal, f"Patient/{proposed.pid}"


def _listed(client: FhirClient, *, weeks_later: float, weeks: int = 6) -> set[str]:
    now = ACCEPTED + timedelta(weeks=weeks_later)
    return {u.order for u in unanswered_referrals(client, now=now, weeks=weeks)}


def test_an_unanswered_referral_is_listed_once_the_weeks_have_passed(
    fhir_client: FhirClient, fhir_server: FhirTestServer, frozen_clock, capsys, tmp_path: Path
):
    order, proposal, patient = _accepted_order(fhir_client)
    assert order not in _listed(fhir_client, weeks_later=5.9)
    (late,) = [
        u
        for u in unanswered_referrals(fhir_client, now=ACCEPTED + timedelta(weeks=6), weeks=6)
        if u.order == order
    ]
    assert (late.proposal, late.patient, late.days, late.weeks) == (proposal, patient, 42, 6)
    assert late.accepted.startswith("2026-11-26")

    frozen_clock.move_to((ACCEPTED + timedelta(weeks=7, days=2)).timestamp())
    url = fhir_server.base_url
    assert main(["review", "followup", "--server", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ORDER", "PATIENT", "PROPOSAL", "ACCEPTED", "AGE"]
    (row,) = [line for line in out if line.startswith(f"{order} ")]
    assert row.split() == [order, patient, proposal, "2026-11-26", "7", "weeks", "2", "days"]
    assert "no answer from the service after 6 weeks" in out[-1]

    assert main(["review", "followup", "--server", url, "--json"]) == 0
    (listed,) = [u for u in orjson.loads(capsys.readouterr().out) if u["order"] == order]
    assert listed == {
        "order": order,
        "proposal": proposal,
        "patient": patient,
        "accepted": late.accepted,
        "days": 51,
        "weeks": 7,
    }

    assert main(["review", "followup", "--server", url, "--weeks", "8", "--json"]) == 0
    assert order not in {u["order"] for u in orjson.loads(capsys.readouterr().out)}
    config = tmp_path / "practice.toml"
    config.write_text(
        '[source]\nkind = "files"\npath = "."\n[output]\nstate_dir = "s"\n[followup]\nweeks = 8\n'
    )
    args = ["review", "followup", "--server", url, "--config", str(config), "--json"]
    assert main(args) == 0
    assert order not in {u["order"] for u in orjson.loads(capsys.readouterr().out)}


def test_a_referral_the_service_answered_is_not_listed(fhir_client: FhirClient):
    by_task, _, patient = _accepted_order(fhir_client)
    fhir_client.create(
        {
            "resourceType": "Task",
            "status": "accepted",
            "intent": "order",
            "basedOn": [{"reference": by_task}],
            "focus": {"reference": by_task},
            "for": {"reference": patient},
            "owner": {"reference": SERVICE},
        }
    )
    by_message, _, patient = _accepted_order(fhir_client)
    fhir_client.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "basedOn": [{"reference": by_message}],
            "subject": {"reference": patient},
            "sender": {"reference": SERVICE},
            "payload": [{"contentString": "First meeting arranged"}],
        }
    )
    by_status, _, _ = _accepted_order(fhir_client)
    order, _ = fhir_client.read("ServiceRequest", by_status.removeprefix("ServiceRequest/"))
    for status in ("on-hold", "active"):  # put on hold by the service, then resumed
        changed = copy.deepcopy(order)
        changed["status"] = status
        changed.pop("meta", None)
        fhir_client.update(changed)
    silent, _, _ = _accepted_order(fhir_client)

    listed = _listed(fhir_client, weeks_later=10)
    assert silent in listed
    assert not {by_task, by_message, by_status} & listed


def test_only_the_tools_active_orders_are_followed_up(fhir_client: FhirClient):
    completed, _, _ = _accepted_order(fhir_client)
    order, _ = fhir_client.read("ServiceRequest", completed.removeprefix("ServiceRequest/"))
    order["status"] = "completed"
    order.pop("meta", None)
    fhir_client.update(order)
    other = copy.deepcopy(order)
    for key in ("id", "identifier", "basedOn"):
        other.pop(key, None)
    other["status"] = "active"
    created = fhir_client.create(other)
    assert created.resource is not None
    not_ours = f"ServiceRequest/{created.resource['id']}"

    listed = _listed(fhir_client, weeks_later=10)
    assert completed not in listed and not_ours not in listed


def test_the_nightly_job_lists_them_with_ids_only(tmp_path: Path, capsys):
    """With [followup] nightly = true the run folder gets followup.json (ids and ages, no
    names) and the ledger counts them; a server of its own, as the job reads every patient."""
    with running_test_server() as server, FhirClient(server.base_url) as client:
        order, proposal, patient = _accepted_order(client, ACCEPTED - timedelta(weeks=7))
        person, _ = client.read("Patient", patient.removeprefix("Patient/"))
        person["name"] = [{"family": "Quillfeather", "given": ["Ottoline"]}]
        person.pop("meta", None)
        client.update(person)
        config = tmp_path / "practice.toml"
        config.write_text(
            f'[source]\nkind = "server"\n[fhir]\nbase_url = "{server.base_url}"\n'
            '[export]\nmode = "rest"\n[screen]\nwrite = false\n'
            '[output]\nstate_dir = "state"\n[followup]\nweeks = 6\nnightly = true\n'
        )
        args = ["-q", "nightly", "--config", str(config), "--as-of", "2026-11-26"]
        assert main(args, {"IPS_SCREEN_STATE_DIR": str(tmp_path / "w")}) == 0
    capsys.readouterr()
    run = tmp_path / "state" / "runs" / "latest"
    written = (run / "followup.json").read_bytes()
    listed = orjson.loads(written)
    assert listed["weeks"] == 6
    assert listed["unanswered"] == [
        {
            "order": order,
            "proposal": proposal,
            "patient": patient,
            "accepted": listed["unanswered"][0]["accepted"],
            "days": 49,
            "weeks": 7,
        }
    ]
    for personal in (b"Quillfeather", b"Ottoline", person["birthDate"].encode()):
        assert personal not in written
    assert (run / "followup.json").stat().st_mode & 0o777 == 0o600
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        (night,) = store.ledger.recent_runs(1)
    assert night["counts"]["followup_unanswered"] == 1


@pytest.mark.parametrize("weeks", ["0", "-1", "six", "521"])
def test_weeks_must_be_a_whole_number_of_weeks(weeks: str, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["review", "followup", "--weeks", weeks, "--server", "http://127.0.0.1:9/fhir"])
    assert exited.value.code == 2
    assert "expected a number of weeks from 1 to 520" in capsys.readouterr().err


def test_the_order_the_cards_suggestion_created_is_followed_up_too(fhir_client: FhirClient):
    """The card's suggested order, signed in the EHR: the tool's identifier, no basedOn. With no
    authoredOn it cannot be aged, so it is listed (age unknown) rather than left out."""
    pid = f"fu-card-{uuid.uuid4().hex[:8]}"

    def card_order(authored: str | None) -> str:
        order = {
            "resourceType": "ServiceRequest",
            "identifier": [{"system": PROPOSAL_ID_SYSTEM, "value": f"{uuid.uuid4().hex}-order"}],
            "status": "active",
            "intent": "order",
            "code": {"text": "IPS"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        if authored:
            order["authoredOn"] = authored
        created = fhir_client.create(order)
        assert created.resource is not None
        return f"ServiceRequest/{created.resource['id']}"

    aged, unaged = card_order("2026-10-01T10:00:00+01:00"), card_order(None)
    now = ACCEPTED + timedelta(weeks=1)
    found = {u.order: u for u in unanswered_referrals(fhir_client, now=now, weeks=6)}
    assert (found[aged].proposal, found[aged].patient, found[aged].weeks) == (
        None,
        f"Patient/{pid}",
        9,  # 1 October to 3 December: 63 days
    )
    assert (found[unaged].accepted, found[unaged].days) == (None, None)
    assert list(found).index(aged) < list(found).index(unaged)  # the unaged ones come last
