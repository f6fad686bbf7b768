"""Paginated prefetch (CDS Hooks 2.0: an EHR MAY page its prefetch searches): the service reads the
remaining pages from the EHR's FHIR server (a small paging server on 127.0.0.1 here), so a
patient's card never depends on the page size.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from ips_screen.service.prefetch import SEARCH_TYPES
from tests.helpers import concept, service_request
from tests.support.cds import (
    call,
    fixture_resources,
    hook_request,
    prefetch_of,
)
from tests.support.local_server import LocalServer, answer

PHYSIO = "1085101000000109"  # any non-IPS referral code: it only has to come first


class Paging:
    """A patient's records served as searchset pages of `size` entries, with next links."""

    def __init__(self, resources: list[dict], size: int) -> None:
        self.resources, self.size, self.base = resources, size, ""

    def page(self, rtype: str, number: int) -> dict[str, Any]:
        found = [r for r in self.resources if r["resourceType"] == rtype]
        chunk = found[(number - 1) * self.size : number * self.size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": self.url(rtype, number)}],
            "entry": [{"fullUrl": f"{rtype}/{r['id']}", "resource": r} for r in chunk],
        }
        if number * self.size < len(found):
            bundle["link"].append({"relation": "next", "url": self.url(rtype, number + 1)})
        return bundle

    def url(self, rtype: str, number: int) -> str:
        return f"{self.base}/{rtype}?patient=fx-01&_count={self.size}&_page={number}"

    def prefetch(self) -> dict[str, Any]:
        """The first page of every search, as a paging EHR sends its prefetch."""
        out = prefetch_of(self.resources)
        for key, rtype in SEARCH_TYPES.items():
            out[key] = self.page(rtype, 1)
        return out

    def handler(self) -> Callable[[BaseHTTPRequestHandler], None]:
        def handle(request: BaseHTTPRequestHandler) -> None:
            parts = urlsplit(request.path)
            rtype = parts.path.removeprefix("/fhir/")
            query = parse_qs(parts.query)
            number = int(query.get("_page", ["1"])[0])
            answer(request, 200, orjson.dumps(self.page(rtype, number)))

        return handle


def records(*, referral: bool) -> list[dict]:
    """Fixture patient 01 (proposed), with another referral first and, if asked, an IPS
    referral last: on a later page when the EHR pages its prefetch."""
    extra = [service_request(code=concept(PHYSIO), id="physio-1", subject="fx-01")]
    if referral:
        extra.append(service_request(status="active", id="ips-ref-1", subject="fx-01"))
    return [*fixture_resources("01"), *extra]


@pytest.mark.parametrize("referral", [False, True])
def test_the_card_does_not_depend_on_the_page_size(
    make_client,
    ehr_key,
    servers,
    referral: bool,
):
    resources = records(referral=referral)
    paging = Paging(resources, size=1)
    ehr: LocalServer = servers(paging.handler())
    paging.base = ehr.base
    client, _ = make_client(ehr_fhir_servers=[ehr.base])
    whole = call(client, ehr_key, hook_request("fx-01", prefetch_of(resources)))
    paged = call(client, ehr_key, hook_request("fx-01", paging.prefetch(), fhir_server=ehr.base))
    assert whole.status_code == paged.status_code == 200
    assert paged.json() == whole.json()
    assert (whole.json()["cards"] == []) is referral  # the IPS referral silences the card
    assert any("_page=2" in path for path in ehr.paths)  # the later pages were read


def test_a_next_link_elsewhere_is_not_followed_the_search_is_redone(
    make_client,
    ehr_key,
    servers,
):
    resources = records(referral=True)
    paging = Paging(resources, size=1)
    ehr: LocalServer = servers(paging.handler())
    paging.base = "https://elsewhere.example/fhir"  # the prefetch's links point off the server
    prefetch = paging.prefetch()
    paging.base = ehr.base
    client, _ = make_client(ehr_fhir_servers=[ehr.base])
    response = call(client, ehr_key, hook_request("fx-01", prefetch, fhir_server=ehr.base))
    assert response.json() == {"cards": []}
    assert "/fhir/ServiceRequest?patient=fx-01" in ehr.paths  # searched again from the start


def test_paginated_prefetch_without_a_fhir_server_is_412(
    make_client,
    ehr_key,
):
    paging = Paging(records(referral=True), size=1)
    paging.base = "https://ehr.example.org/fhir"
    client, _ = make_client()
    response = call(client, ehr_key, hook_request("fx-01", paging.prefetch()))
    assert response.status_code == 412
    assert "paginated" in response.json()["error"]
