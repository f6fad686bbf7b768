"""Paginated prefetch against the real FHIR server: the EHR sends the first page of each search
as the server pages it (`_count=1`), and the service reads the rest from the server, giving the
same card as when every search came in one page.
"""

from __future__ import annotations

from typing import Any

import pytest

from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.service.prefetch import SEARCH_TYPES
from tests.support.cds import (
    hook,
    hook_request,
    prefetch_of,
)

pytestmark = pytest.mark.integration


def first_pages(client: FhirClient, pid: str, resources: list[dict]) -> dict[str, Any]:
    """Prefetch as an EHR that pages by one: the Patient and page 1 of each search."""
    out = prefetch_of(resources)
    for key, rtype in SEARCH_TYPES.items():
        out[key] = next(client.search_pages(rtype, {"patient": pid, "_count": "1"}))
    return out


def test_pages_of_one_give_the_same_card_as_one_page(
    service,
    ehr_key,
    fhir_server: FhirTestServer,
    fhir_client: FhirClient,
    load,
):
    loaded = load(proposal=True)
    on_server = [
        r
        for rtype in ("Patient", *SEARCH_TYPES.values())
        for r in (
            [fhir_client.read("Patient", loaded.pid)[0]]
            if rtype == "Patient"
            else list(fhir_client.search(rtype, {"patient": loaded.pid}))
        )
        if r.get("resourceType") == rtype
    ]
    whole = hook(service, ehr_key, hook_request(loaded.pid, prefetch_of(on_server)))
    paged_prefetch = first_pages(fhir_client, loaded.pid, on_server)
    assert any(
        link["relation"] == "next"
        for value in paged_prefetch.values()
        for link in value.get("link", [])
    )  # the server really paged some search
    body = hook_request(loaded.pid, paged_prefetch, fhir_server=fhir_server.base_url)
    assert hook(service, ehr_key, body) == whole
    (card,) = whole["cards"]
    assert card["links"][0]["url"].endswith(f"/review/task/{loaded.task_id}")
