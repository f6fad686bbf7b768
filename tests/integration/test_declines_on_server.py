"""Declines read from a real FHIR server: the server stamps meta.lastUpdated itself when the data
is loaded, so a revoked proposal looks freshly revoked. The amended contract dates a decline by
its review Task alone when there is one, so fixture 14 (declined over 12 months ago) is proposed
from the server as it is from the files; only a revoked proposal with no review Task is dated by
the server's stamp."""

from __future__ import annotations

from datetime import date

import pytest

from ips_screen.dates import parse_fhir_date
from ips_screen.devtools.load import load_bundles
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.pipeline import screen_server
from tests.helpers import default_ruleset
from tests.support.paths import FIXTURES, FROZEN_NOW

pytestmark = pytest.mark.integration

LOADED = {
    "fx-14": "14-declined-over-12-months-ago.json",
    "fx-26": "26-ips-proposal-revoked.json",
    "fx-45": "45-declined-13-months-ago-request-edited-recently.json",
}


def test_a_decline_over_12_months_ago_is_proposed_when_read_from_a_server(
    fhir_server: FhirTestServer,
):
    with FhirClient(fhir_server.base_url) as client:
        load_bundles(client, [FIXTURES / "patients" / name for name in LOADED.values()])
        stamped = client.read("ServiceRequest", "fx-14-sr-3")[0]["meta"]["lastUpdated"]
        # as of the day the server stamped the proposal (or later): its stamp is not after T
        as_of = max(parse_fhir_date(stamped), FROZEN_NOW.date())
        assert as_of >= date(2026, 11, 26)
        result = screen_server(
            client,
            default_ruleset(),
            as_of=as_of,
            out_dir=None,
            now=FROZEN_NOW,
            patients=[f"Patient/{pid}" for pid in LOADED],
        )
    outcomes = {d.patient: (d.outcome, list(d.reasons)) for d in result.decisions}
    assert outcomes == {
        "Patient/fx-14": ("propose", []),  # Task rejected 2025-10-14 dates it
        "Patient/fx-45": ("propose", []),  # Task rejected 2025-10-20 dates it
        "Patient/fx-26": ("excluded", ["ips-declined"]),  # no Task: the server's stamp dates it
    }
