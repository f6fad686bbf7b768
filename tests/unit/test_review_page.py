"""The review page (ips_screen.service.review_page): sign-in, CSRF, worklist, task page, accept and
decline, conflicts and accessibility basics, through TestClient.

Pages that read or write proposals run against a real FHIR server (sekmet-fhir on 127.0.0.1,
started once for this module, as tests/integration/conftest.py does); they are skipped only when
the server cannot be installed because the package index is unreachable. The service builds its
backend client from the configuration, as `ips-screen serve` does.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.errors import ConfigError
from ips_screen.fhir.client import FhirClient
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.service.app import create_app
from ips_screen.service.config import parse_config
from ips_screen.service.sessions import COOKIE as SESSION_COOKIE
from ips_screen.writeback import review
from tests.fhir_support import (
    load_proposed_patient,
    nhs_number_for,
    put_people,
    running_test_server,
)
from tests.support.cds import (
    PASSWORD,
    SECRET_ENV,
    users_file,
)
from tests.support.people import IPS_SERVICE, IPS_SERVICE_NAME
from tests.support.readability import readability

DECLINE_REASONS = load_ruleset().model.proposal.decline_reasons

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PUBLIC = "https://ips.example.org"
DR = "Practitioner/dr-page"
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)


# --------------------------------------------------------------------------- HTML


VOID = frozenset({"area", "base", "br", "col", "hr", "img", "input", "link", "meta", "wbr"})


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text inside each element with an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, str] = {}
        self._stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag in VOID:
            return
        self._stack.append((tag, values.get("id")))
        if values.get("id"):
            self.text.setdefault(values["id"], "")

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._stack:
            if element_id:
                self.text[element_id] += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def one(page: _Page, **attrs: str) -> dict[str, str]:
    found = [a for _, a in page.elements if all(a.get(k) == v for k, v in attrs.items())]
    assert len(found) == 1, (attrs, found)
    return found[0]


def tags(page: _Page, tag: str, **attrs: str) -> list[dict[str, str]]:
    return [
        a for t, a in page.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
    ]


def check_accessible(html: str) -> None:
    """lang="en", one h1, and a <label for> for every form control that is not hidden."""
    page = parse(html)
    assert tags(page, "html")[0]["lang"] == "en"
    assert len(tags(page, "h1")) == 1
    labelled = {a["for"] for a in tags(page, "label") if a.get("for")}
    for tag, attrs in page.elements:
        if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
            assert attrs.get("id") in labelled, (tag, attrs)
    assert "focus-visible" in html  # a visible focus style


def csrf_of(html: str) -> str:
    (field,) = {a["value"] for a in tags(parse(html), "input", name="csrf_token")}
    return field


# --------------------------------------------------------------------------- server and app


@pytest.fixture(scope="module")
def fhir_server() -> Iterator[FhirTestServer]:
    with running_test_server() as server:
        yield server


@pytest.fixture
def fhir(fhir_server: FhirTestServer) -> Iterator[FhirClient]:
    with FhirClient(fhir_server.base_url, timeout=(5, 30)) as client:
        yield client


NO_REFERRAL: dict[str, str] = {}  # `referral=NO_REFERRAL`: serve.toml without [referral]


def page_config(
    tmp_path: Path,
    base_url: str,
    referral: dict[str, str] | None = None,
    leaflet: dict[str, str] | None = None,
    **review_page: Any,
) -> Any:
    page: dict[str, Any] = review_page or {"users_file": str(users_file(tmp_path, {"dr": DR}))}
    referral = {"ips_service": IPS_SERVICE} if referral is None else referral
    return parse_config(
        {
            **({"leaflet": leaflet} if leaflet else {}),
            "public_base_url": PUBLIC,
            "ehr_fhir_servers": ["https://ehr.example.org/fhir"],
            "fhir": {"base_url": base_url},
            "ehr_auth": {
                "issuers": [
                    {
                        "iss": "https://ehr.example.org",
                        "jwks_url": "https://ehr.example.org/jwks.json",
                    }
                ]
            },
            "review_page": page,
            "state_dir": str(tmp_path / "serve-state"),
            **({"referral": referral} if referral else {}),
        }
    )


@pytest.fixture
def app_for(tmp_path: Path) -> Callable[..., TestClient]:
    def make(base_url: str = "http://127.0.0.1:9/fhir", **kwargs: Any) -> TestClient:
        config = page_config(
            tmp_path,
            base_url,
            kwargs.pop("referral", None),
            kwargs.pop("leaflet", None),
            **kwargs.pop("review_page", {}),
        )
        app = create_app(config, environ=SECRET_ENV)
        return TestClient(app, base_url="https://testserver", follow_redirects=False, **kwargs)

    return make


def sign_in(client: TestClient, user: str = "dr", password: str = PASSWORD):
    form = client.get("/review/login")
    return client.post(
        "/review/login",
        data={"username": user, "password": password, "csrf_token": csrf_of(form.text)},
    )


@pytest.fixture
def signed_in(app_for, fhir_server: FhirTestServer) -> TestClient:
    client = app_for(fhir_server.base_url)
    assert sign_in(client).status_code == 303
    return client


@pytest.fixture
def propose(fhir: FhirClient) -> Callable[..., tuple[str, str, str]]:
    """Load a patient and the proposal the screen writes; (patient id, Task id, proposal id)."""

    put_people(fhir, DR)

    def make(employed_since: str = "2026-06-01") -> tuple[str, str, str]:
        proposed = load_proposed_patient(fhir, "pg", now=NOW, employed_since=employed_since)
        return proposed.pid, proposed.task_id, proposed.sr_id

    return make


# --------------------------------------------------------------------------- sign-in


def test_every_page_needs_sign_in(app_for):
    client = app_for()
    for path in ("/review/", "/review/task/t-1", "/review"):
        response = client.get(path)
        assert response.status_code in (302, 303, 307)
        assert response.headers["location"].endswith(("/review/login", "/review/"))
    response = client.post("/review/task/t-1/accept", data={"csrf_token": "x"})
    assert response.status_code == 303 and response.headers["location"] == "/review/login"


def test_login_form_is_labelled_and_has_the_expected_ids(app_for):
    response = app_for().get("/review/login")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page = parse(response.text)
    form = one(page, id="login-form")
    assert (form["method"], form["action"]) == ("post", "/review/login")
    assert one(page, id="username")["name"] == "username"
    password = one(page, id="password")
    assert (password["name"], password["type"]) == ("password", "password")
    assert one(page, id="sign-in")["type"] == "submit"
    assert len(csrf_of(response.text)) >= 32
    check_accessible(response.text)


def test_wrong_password_and_unknown_user_get_the_same_answer(app_for):
    client = app_for()
    wrong = sign_in(client, password="not the password")
    unknown = sign_in(client, user="nobody")
    for response in (wrong, unknown):
        assert response.status_code == 200
        page = parse(response.text)
        one(page, id="login-error")
        one(page, id="login-form")
    assert parse(wrong.text).text["login-error"] == parse(unknown.text).text["login-error"]
    assert client.get("/review/").status_code == 303  # still not signed in


def test_sign_in_sets_a_safe_session_cookie(app_for):
    client = app_for()
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/review/"
    cookie = response.headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=lax", "secure", "path=/review"):
        assert flag in cookie
    form = client.get("/review/login")  # signed in: straight to the worklist
    assert form.status_code == 303 and form.headers["location"] == "/review/"
    assert client.post("/review/logout", data={}).status_code == 403


def at(client: TestClient, address: str) -> TestClient:
    """Another client of the same app, calling from `address`."""
    return TestClient(
        client.app, base_url="https://testserver", follow_redirects=False, client=(address, 40000)
    )


def test_failures_slow_down_that_address_and_username_not_the_user_elsewhere(app_for, frozen_clock):
    attacker = at(app_for(), "203.0.113.9")
    answers = [sign_in(attacker, password="guess") for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].headers["retry-after"] == "1"
    assert "try again" in parse(answers[-1].text).text["login-error"]
    assert sign_in(attacker).status_code == 429  # no password is even checked
    frozen_clock.shift(1)
    assert sign_in(attacker, password="guess").status_code == 200  # one more guess ...
    delayed = sign_in(attacker)
    assert (delayed.status_code, delayed.headers["retry-after"]) == (429, "2")  # ... then longer

    # The real user, at another address, is not locked out by any of this.
    assert sign_in(at(attacker, "198.51.100.7")).status_code == 303


def test_an_address_guessing_many_usernames_is_held_off(app_for):
    sprayer = at(app_for(), "203.0.113.10")
    for n in range(30):
        assert sign_in(sprayer, user=f"user{n}", password="Winter2026!").status_code == 200
    held = sign_in(sprayer, user="dr")
    assert held.status_code == 429 and held.headers["retry-after"] == "900"
    assert sign_in(at(sprayer, "198.51.100.7")).status_code == 303


def test_a_username_guessed_from_many_addresses_gets_one_free_failure_per_address(app_for):
    client = app_for()
    for n in range(10):
        bot = at(client, f"203.0.113.{100 + n}")
        assert [sign_in(bot, password="guess").status_code for _ in range(5)] == [200] * 5
    newcomer = at(client, "203.0.113.200")
    assert sign_in(newcomer, password="guess").status_code == 200
    assert sign_in(newcomer, password="guess").status_code == 429
    assert sign_in(at(client, "198.51.100.7")).status_code == 303  # the user still signs in


def test_behind_a_proxy_the_throttle_counts_the_address_the_proxy_names(app_for, tmp_path: Path):
    page = {
        "users_file": str(users_file(tmp_path, {"dr": DR})),
        "client_address_header": "X-Forwarded-For",
        "trusted_proxy_ips": ["10.0.0.1"],
    }
    proxy = at(app_for(review_page=page), "10.0.0.1")

    def attempt(client: TestClient, forwarded_for: str, password: str):
        form = client.get("/review/login")
        data = {"username": "dr", "password": password, "csrf_token": csrf_of(form.text)}
        return client.post("/review/login", data=data, headers={"X-Forwarded-For": forwarded_for})

    # The proxy appends the client's address; what the client sent before it is not believed.
    guesses = [attempt(proxy, f"1.2.3.{n}, 203.0.113.9", "guess") for n in range(6)]
    assert [g.status_code for g in guesses] == [200] * 5 + [429]
    assert attempt(proxy, "198.51.100.7", PASSWORD).status_code == 303  # another client
    # A peer that is not the trusted proxy cannot choose its address with the header.
    direct = at(proxy, "203.0.113.9")
    assert attempt(direct, "198.51.100.7", PASSWORD).status_code == 429


def test_the_throttle_is_shared_by_workers_and_kept_across_restarts(app_for):
    first = at(app_for(), "203.0.113.9")
    for _ in range(5):
        assert sign_in(first, password="guess").status_code == 200
    other_worker = at(app_for(), "203.0.113.9")  # a second app on the same state_dir
    assert sign_in(other_worker, password="guess").status_code == 429


def test_login_without_csrf_is_403(app_for):
    client = app_for()
    client.get("/review/login")
    response = client.post("/review/login", data={"username": "dr", "password": PASSWORD})
    assert response.status_code == 403
    assert (
        client.post(
            "/review/login",
            data={"username": "dr", "password": PASSWORD, "csrf_token": "forged" * 8},
        ).status_code
        == 403
    )


def test_the_cookie_holds_only_an_opaque_random_id(app_for):
    client = app_for()
    assert sign_in(client).status_code == 303
    value = client.cookies[SESSION_COOKIE]
    assert re.fullmatch(r"[A-Za-z0-9_\-]{43}", value)


def with_cookie(client: TestClient, value: str) -> TestClient:
    """A fresh client of the same app (or another on the same state) sending a saved cookie."""
    fresh = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    fresh.cookies.set(SESSION_COOKIE, value, domain="testserver.local", path="/review")
    return fresh


def is_signed_in(client: TestClient) -> bool:
    """The login page sends a signed-in user on to the worklist."""
    response = client.get("/review/login")
    assert response.status_code in (200, 303)
    return response.status_code == 303


def test_logout_ends_the_session_even_for_a_saved_cookie(app_for):
    client = app_for()
    assert sign_in(client).status_code == 303
    saved = client.cookies[SESSION_COOKIE]
    assert is_signed_in(with_cookie(client, saved))
    token = csrf_of(signed_in_page(client))
    logout = client.post("/review/logout", data={"csrf_token": token})
    assert logout.status_code == 303 and logout.headers["location"] == "/review/login"
    assert "max-age=0" in logout.headers["set-cookie"].lower()
    assert not is_signed_in(client)
    assert not is_signed_in(with_cookie(client, saved))  # the copy is worthless now


def signed_in_page(client: TestClient) -> str:
    """A page with the logout form (the worklist's 502 page: there is no FHIR server here)."""
    response = client.get("/review/")
    assert response.status_code == 502
    return response.text


def test_an_idle_session_ends_and_an_active_one_lasts_to_its_maximum_age(app_for, frozen_clock):
    client = app_for()  # session_idle_seconds 1800, session_max_age_seconds 28800 (defaults)
    assert sign_in(client).status_code == 303
    for _ in range(15):  # active every 29 minutes: 7 h 15 min
        frozen_clock.shift(29 * 60)
        assert is_signed_in(client)
    frozen_clock.shift(29 * 60)  # 7 h 44 min
    assert is_signed_in(client)
    frozen_clock.shift(17 * 60)  # 8 h 1 min after sign-in: past the maximum age
    assert not is_signed_in(client)

    assert sign_in(client).status_code == 303
    frozen_clock.shift(30 * 60 + 1)  # idle for longer than the idle timeout
    assert not is_signed_in(client)


def test_a_restart_keeps_a_valid_session(app_for):
    client = app_for()
    assert sign_in(client).status_code == 303
    restarted = app_for()  # a new process on the same state_dir and secret
    assert is_signed_in(with_cookie(restarted, client.cookies[SESSION_COOKIE]))


def test_session_idle_cannot_exceed_the_maximum_age(tmp_path: Path):
    users = str(users_file(tmp_path, {"dr": DR}))
    page = {"users_file": users, "session_max_age_seconds": 3600, "session_idle_seconds": 7200}
    with pytest.raises(ConfigError, match="session_idle_seconds"):
        page_config(tmp_path, "http://127.0.0.1:9/fhir", **page)


def test_session_secret_must_be_set(tmp_path: Path):
    config = page_config(tmp_path, "http://127.0.0.1:9/fhir")
    with pytest.raises(ConfigError, match="IPS_SCREEN_SESSION_SECRET"):
        create_app(config, environ={"IPS_SCREEN_SESSION_SECRET": "short"})


# --------------------------------------------------------------------------- with a FHIR server

integration = pytest.mark.integration


@integration
def test_worklist_lists_open_reviews_with_filters(signed_in: TestClient, propose):
    pid, task_id, _ = propose()
    owner = f"Practitioner/gp-{pid}"
    response = signed_in.get("/review/", params={"owner": owner})
    assert response.status_code == 200
    check_accessible(response.text)
    page = parse(response.text)
    one(page, id="worklist")
    rows = tags(page, "tr")
    assert [r["data-task"] for r in rows if "data-task" in r] == [task_id]
    link = one(page, **{"class": "open-task"})
    assert link["href"] == f"/review/task/{task_id}"
    filters = one(page, id="filters")
    assert filters["method"] == "get"
    assert one(page, id="priority")["name"] == "priority"
    assert [a["value"] for a in tags(page, "option")] == ["all", "early", "routine"]
    assert one(page, id="owner")["value"] == owner
    row_text = response.text.split(f'data-task="{task_id}"')[1].split("</tr>")[0]
    number = nhs_number_for(pid)
    shown_number = f"{number[:3]} {number[3:6]} {number[6:]}"
    for words in (f"Patient/{pid}", "early", "Offer IPS", owner, "2026-11-26"):
        assert words in row_text
    for words in ("OKAFOR, Ada", "1980-01-01 (46 y)", shown_number):
        assert words in row_text
    assert "not a valid NHS number" not in row_text

    routine = parse(signed_in.get("/review/", params={"owner": owner, "priority": "routine"}).text)
    assert not [r for r in tags(routine, "tr") if "data-task" in r]
    one(routine, id="empty")

    mine = parse(signed_in.get("/review/").text)  # opens on the signed-in clinician's patients
    assert task_id not in [r["data-task"] for r in tags(mine, "tr") if "data-task" in r]
    everyone = parse(signed_in.get("/review/", params={"scope": "all"}).text)
    assert task_id in [r["data-task"] for r in tags(everyone, "tr") if "data-task" in r]

    bad = parse(signed_in.get("/review/", params={"owner": "Nobody Atall"}).text)
    one(bad, id="filter-error")
    assert not [r for r in tags(bad, "tr") if "data-task" in r]


@integration
def test_task_page_shows_the_evidence_and_both_forms(signed_in: TestClient, propose):
    pid, task_id, sr_id = propose()
    response = signed_in.get(f"/review/task/{task_id}")
    assert response.status_code == 200
    check_accessible(response.text)
    page = parse(response.text)
    timeline = page.text["timeline"]
    for words in (
        f"Condition/{pid}-pain",
        f"Observation/{pid}-emp",
        f"Observation/{pid}-fit1",
        f"DocumentReference/{pid}-fit2",
        "not fit for work",
        "may be fit for work",
    ):
        assert words in timeline
    assert (
        timeline.index("2025-01-15") < timeline.index("2026-05-01") < timeline.index("2026-08-01")
    )
    assert "Chronic pain" in page.text["why"] and "Offer IPS" in page.text["why"]
    assert "voluntary" in page.text["patient-explanation"]
    assert "@media print" in response.text and "#patient-explanation" in response.text
    assert page.text["leaflet-for"] == f"For {page.text['patient-name']}"  # as the page names them
    assert "Riverside" not in page.text["patient-explanation"]  # no [leaflet] configured
    assert "26 November 2026" in page.text["leaflet-date"]
    accept = one(page, id="accept-form")
    assert (accept["method"], accept["action"]) == ("post", f"/review/task/{task_id}/accept")
    one(page, id="accept")
    decline = one(page, id="decline-form")
    assert (decline["method"], decline["action"]) == ("post", f"/review/task/{task_id}/decline")
    assert one(page, id="reason")["name"] == "reason"
    # No reason is chosen for the clinician: the first option is an empty prompt.
    assert [a["value"] for a in tags(page, "option")] == ["", *DECLINE_REASONS]
    for display in DECLINE_REASONS.values():
        assert display in response.text
    assert one(page, id="note")["name"] == "note"
    one(page, id="decline")
    assert "ServiceRequest/" + sr_id in response.text
    assert signed_in.get("/review/task/no-such-task").status_code == 404


@integration
def test_accept_through_the_page(signed_in: TestClient, propose, fhir: FhirClient):
    _, task_id, sr_id = propose()
    token = csrf_of(signed_in.get(f"/review/task/{task_id}").text)
    agreed = {"csrf_token": token, "patient_agreed": "yes"}
    response = signed_in.post(f"/review/task/{task_id}/accept", data=agreed)
    assert response.status_code == 303 and response.headers["location"] == "/review/"
    worklist = parse(signed_in.get("/review/").text)
    assert worklist.text["flash"].startswith(f"Accepted Task/{task_id}: referral ServiceRequest/")
    assert f"(urgent) to {IPS_SERVICE_NAME}" in worklist.text["flash"]
    assert task_id not in [r["data-task"] for r in tags(worklist, "tr") if "data-task" in r]
    assert fhir.read("Task", task_id)[0]["status"] == "completed"
    (order,) = [
        r
        for r in fhir.search("ServiceRequest", {"based-on": f"ServiceRequest/{sr_id}"})
        if r["resourceType"] == "ServiceRequest"
    ]
    assert order["requester"] == {"reference": DR}
    assert order["performer"] == [{"reference": IPS_SERVICE}]

    # Accepting again: who did what and when, as a warning (409), never as success.
    again = signed_in.post(f"/review/task/{task_id}/accept", data=agreed)
    assert again.status_code == 409
    page = parse(again.text)
    warning = one(page, id="already-decided")
    assert warning["class"] == "warning" and warning["role"] == "alert"
    assert "Dr A Smith accepted this on 26 November 2026 at 09:30." in page.text["already-decided"]
    assert not tags(page, "p", id="flash")
    assert "flash" not in parse(signed_in.get("/review/").text).text
    assert fhir.read("Task", task_id)[0]["status"] == "completed"


@integration
def test_decline_through_the_page(signed_in: TestClient, propose, fhir: FhirClient):
    _, task_id, sr_id = propose()
    token = csrf_of(signed_in.get(f"/review/task/{task_id}").text)
    path = f"/review/task/{task_id}/decline"
    missing_note = signed_in.post(path, data={"csrf_token": token, "reason": "other"})
    assert missing_note.status_code == 400
    one(parse(missing_note.text), id="error-summary")
    bad_reason = signed_in.post(path, data={"csrf_token": token, "reason": "bored"})
    assert bad_reason.status_code == 400
    no_reason = signed_in.post(path, data={"csrf_token": token, "reason": ""})
    assert no_reason.status_code == 400
    assert "Choose a reason" in parse(no_reason.text).text["error-summary"]
    assert fhir.read("Task", task_id)[0]["status"] == "requested"

    data = {"csrf_token": token, "reason": "not-interested", "note": "Happy volunteering."}
    response = signed_in.post(path, data=data)
    assert response.status_code == 303
    assert (
        parse(signed_in.get("/review/").text)
        .text["flash"]
        .startswith(
            f"Declined Task/{task_id} (Patient not interested in IPS at present): not suggested "
            "again for 12 months, until 26 November 2027."
        )
    )
    task = fhir.read("Task", task_id)[0]
    assert task["status"] == "rejected"
    assert task["statusReason"]["coding"][0]["code"] == "not-interested"
    assert task["note"][-1] == {
        "authorReference": {"reference": DR},
        "time": task["note"][-1]["time"],
        "text": "Happy volunteering.",
    }
    assert fhir.read("ServiceRequest", sr_id)[0]["status"] == "revoked"


@integration
def test_a_task_for_another_patient_than_its_proposal_is_refused(
    signed_in: TestClient, propose, fhir: FhirClient, caplog
):
    _, task_id, sr_id = propose()
    other, _, _ = propose()
    task = fhir.read("Task", task_id)[0]
    stray = {k: v for k, v in task.items() if k not in ("meta", "identifier")}
    stray.update(id=f"{task_id}-stray", **{"for": {"reference": f"Patient/{other}"}})
    fhir.update(stray)  # another patient's review, focused on this patient's proposal
    token = csrf_of(signed_in.get("/review/").text)
    assert stray["id"] not in signed_in.get("/review/").text
    assert signed_in.get(f"/review/task/{stray['id']}").status_code == 404
    path = f"/review/task/{stray['id']}"
    agreed = {"csrf_token": token, "patient_agreed": "yes"}
    assert signed_in.post(f"{path}/accept", data=agreed).status_code == 404
    decline = {"csrf_token": token, "reason": "not-now"}
    assert signed_in.post(f"{path}/decline", data=decline).status_code == 404
    refused = f"Task/{stray['id']} is not for the Patient of ServiceRequest/{sr_id}"
    assert f"review page: decline refused: {refused}; nothing written" in caplog.text
    assert fhir.read("Task", stray["id"])[0]["status"] == "requested"
    assert fhir.read("Task", task_id)[0]["status"] == "requested"
    assert fhir.read("ServiceRequest", sr_id)[0]["status"] == "draft"


@integration
def test_forms_without_the_csrf_token_are_403(signed_in: TestClient, propose, fhir: FhirClient):
    _, task_id, _ = propose()
    for data in ({}, {"csrf_token": "x" * 43}):
        assert signed_in.post(f"/review/task/{task_id}/accept", data=data).status_code == 403
        decline = {**data, "reason": "not-now"}
        assert signed_in.post(f"/review/task/{task_id}/decline", data=decline).status_code == 403
        assert signed_in.post("/review/logout", data=data).status_code == 403
    assert fhir.read("Task", task_id)[0]["status"] == "requested"

    token = csrf_of(signed_in.get("/review/").text)
    response = signed_in.post("/review/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/review/login"
    assert signed_in.get("/review/").status_code == 303


@integration
def test_a_concurrent_change_is_a_409_page_and_changes_nothing(
    signed_in: TestClient, propose, fhir: FhirClient, monkeypatch
):
    _, task_id, _ = propose()
    token = csrf_of(signed_in.get(f"/review/task/{task_id}").text)
    original = review.load_review

    def load_then_someone_else_edits(client: FhirClient, task: str) -> review.Loaded:
        loaded = original(client, task)
        fhir.update(dict(loaded.task, note=[{"text": "Phoned the patient."}]))
        return loaded

    monkeypatch.setattr(review, "load_review", load_then_someone_else_edits)
    agreed = {"csrf_token": token, "patient_agreed": "yes"}
    response = signed_in.post(f"/review/task/{task_id}/accept", data=agreed)
    assert response.status_code == 409
    page = parse(response.text)
    assert "someone else" in page.text["conflict"].lower()
    check_accessible(response.text)
    assert fhir.read("Task", task_id)[0]["status"] == "requested"


@integration
def test_proxy_header_signs_in_only_from_a_trusted_proxy(app_for, fhir_server, propose):
    pid, task_id, _ = propose()
    proxy = {
        "proxy_header": "X-Remote-User",
        "proxy_users": {"dr.proxy": DR},
        "trusted_proxy_ips": ["127.0.0.1"],
    }
    trusted = app_for(fhir_server.base_url, review_page=proxy, client=("127.0.0.1", 40000))
    response = trusted.get(
        "/review/",
        params={"owner": f"Practitioner/gp-{pid}"},
        headers={"X-Remote-User": "dr.proxy"},
    )
    assert response.status_code == 200
    assert task_id in response.text and "dr.proxy" in response.text
    assert trusted.get("/review/", headers={"X-Remote-User": "mallory"}).status_code == 401
    assert trusted.get("/review/").status_code == 401
    assert trusted.get("/review/login", headers={"X-Remote-User": "dr.proxy"}).status_code == 303

    untrusted = app_for(fhir_server.base_url, review_page=proxy, client=("10.1.2.3", 40000))
    assert untrusted.get("/review/", headers={"X-Remote-User": "dr.proxy"}).status_code == 401


# --------------------------------------------------------------------------- passwords and config


def test_password_hashes_and_the_users_file(tmp_path: Path):
    from ips_screen.service.config import hash_password, load_users, verify_password

    hashed = hash_password("a long pass phrase")
    assert hashed.startswith("scrypt$16384$8$1$")
    assert verify_password("a long pass phrase", hashed)
    assert not verify_password("a long pass phrase!", hashed)
    assert hash_password("a long pass phrase") != hashed  # random salt
    assert not verify_password("x", "scrypt$3$8$1$AAAA$AAAA")  # bad parameters: never a match

    path = tmp_path / "users.txt"
    path.write_text(f"# clinicians\n\ndr.a:{hashed}:Practitioner/1\n")
    assert load_users(path)["dr.a"].practitioner == "Practitioner/1"
    for line, message in [
        (f"dr.a:{hashed}", "expected username:scrypt"),
        ("dr.a:plain-password:Practitioner/1", "bad password hash"),
        (f"dr.a:{hashed}:Patient/1", "Practitioner/<id>"),
        (f"dr.a:{hashed}:Practitioner/1\ndr.a:{hashed}:Practitioner/2", "listed twice"),
    ]:
        path.write_text(line + "\n")
        with pytest.raises(ConfigError, match=message) as info:
            load_users(path)
        assert hashed not in str(info.value)


def test_cli_hash_password_reads_stdin(monkeypatch, capsys):
    import io

    from ips_screen.cli.main import main
    from ips_screen.service.config import verify_password

    monkeypatch.setattr("sys.stdin", io.StringIO("a long pass phrase\n"))
    args = ["serve", "hash-password", "--user", "dr.a", "--practitioner", "Practitioner/1"]
    assert main(args) == 0
    user, hashed, practitioner = capsys.readouterr().out.strip().split(":")
    assert (user, practitioner) == ("dr.a", "Practitioner/1")
    assert verify_password("a long pass phrase", hashed)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["serve", "hash-password"]) == 2
    assert main(["serve"]) == 2  # no --config
    assert "--config" in capsys.readouterr().err


def test_cli_several_workers_need_a_state_dir(tmp_path: Path, capsys):
    from ips_screen.cli.main import main

    config = tmp_path / "serve.toml"
    config.write_text(
        'public_base_url = "http://127.0.0.1:8080"\n[fhir]\nbase_url = "http://127.0.0.1:9/fhir"\n'
        "[ehr_auth]\ndisabled = true\n"
    )
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 2
    assert "--workers 2 needs state_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and exit code 2
        main(["serve", "--config", str(config), "--workers", "0"])
    assert exit_info.value.code == 2
    assert "workers must be 1 to 64" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fhir": {"base_url": "https://f.example/R4", "token": "abc"}}, "unknown key"),
        ({"fhir": {"base_url": "http://f.example/R4", "auth": "bearer"}}, "without https"),
        ({"fhir": {"base_url": "https://f.example/R4", "token_env": "eyJ.a.b"}}, "NAME"),
        ({"public_base_url": "http://ips.example.org"}, "must be https"),
        ({"review_page": {"users_file": "u", "proxy_header": "X-User"}}, "exactly one"),
        ({"review_page": {"proxy_header": "X-User"}}, "needs proxy_users"),
        ({"review_page": {"users_file": "u", "session_secret_env": "s3cr3t!"}}, "NAME"),
        ({"ehr_auth": {"issuers": []}}, "ehr_auth"),
        ({"state_dir": None}, "state_dir: required"),
        (
            {"review_page": {"users_file": "u", "trusted_proxy_ips": ["10.0.0.1"]}},
            "client_address_header go together",
        ),
    ],
)
def test_config_is_strict(tmp_path: Path, change: dict, message: str):
    data: dict[str, Any] = {
        "public_base_url": PUBLIC,
        "ehr_fhir_servers": ["https://ehr.example.org/fhir"],
        "fhir": {"base_url": "https://fhir.example.org/R4"},
        "ehr_auth": {"issuers": [{"iss": "https://e.example", "jwks_url": "https://e.example/k"}]},
        "state_dir": "state",
    }
    data.update(change)
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)


def test_example_config_is_valid():
    from ips_screen.service.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "docs" / "serve.example.toml")
    assert config.fhir.auth.method == "smart" and config.review_page is not None
    assert config.endpoint("/cds-services/ips-screen") == (
        "https://ips.practice.example/cds-services/ips-screen"
    )


# --------------------------------------------------------------------------- forms in error


def error_pattern(response, fields: dict[str, str]) -> _Page:
    """The NHS error pattern: 400, "Error: " first in the title, a summary (role=alert) linking
    to each field in error, the message beside the field, aria-invalid on it; no `required`
    attribute anywhere (the server checks, not the browser's bubble)."""
    assert response.status_code == 400
    check_accessible(response.text)
    title = re.search(r"<title>(.*?)</title>", response.text, re.S)
    assert title is not None and title.group(1).startswith("Error: ")
    page = parse(response.text)
    summary = one(page, id="error-summary")
    assert summary["role"] == "alert"
    links = [a["href"] for a in tags(page, "a") if a.get("href", "").startswith("#")]
    assert [h for h in links if h != "#main"] == [f"#{f}" for f in fields]
    for field, message in fields.items():
        assert message in page.text["error-summary"]
        control = one(page, id=field)
        assert control["aria-invalid"] == "true"
        assert control["aria-describedby"] == f"{field}-error"
        assert message in page.text[f"{field}-error"]
    assert not [a for _, a in page.elements if "required" in a]
    return page


@integration
def test_accept_without_the_agreement_ticked_is_an_error_on_the_box(
    signed_in: TestClient, propose, fhir: FhirClient
):
    _, task_id, _ = propose()
    form = signed_in.get(f"/review/task/{task_id}")
    page = parse(form.text)
    box = one(page, id="patient-agreed")
    assert (box["type"], box["name"], box["value"]) == ("checkbox", "patient_agreed", "yes")
    assert "checked" not in box and "aria-invalid" not in box
    assert "The patient agrees to be referred to IPS" in form.text
    assert not re.search(r"<title>Error", form.text)
    response = signed_in.post(
        f"/review/task/{task_id}/accept", data={"csrf_token": csrf_of(form.text)}
    )
    page = error_pattern(
        response, {"patient-agreed": "Confirm that the patient agrees to be referred to IPS"}
    )
    assert "checked" not in one(page, id="patient-agreed")
    assert fhir.read("Task", task_id)[0]["status"] == "requested"


@integration
def test_decline_errors_keep_the_choices_made(signed_in: TestClient, propose, fhir: FhirClient):
    _, task_id, _ = propose()
    token = csrf_of(signed_in.get(f"/review/task/{task_id}").text)
    path = f"/review/task/{task_id}/decline"

    other = signed_in.post(path, data={"csrf_token": token, "reason": "other", "note": "  "})
    page = error_pattern(other, {"note": "Add a note when the reason is Other"})
    (chosen,) = [a["value"] for a in tags(page, "option") if "selected" in a]
    assert chosen == "other"  # the reason chosen is kept
    assert "aria-invalid" not in one(page, id="reason")

    empty = signed_in.post(path, data={"csrf_token": token, "reason": "", "note": "Phoned: busy"})
    page = error_pattern(empty, {"reason": "Choose a reason for declining"})
    assert page.text["note"] == "Phoned: busy"  # the note written is kept
    (chosen,) = [a["value"] for a in tags(page, "option") if "selected" in a]
    assert chosen == ""

    unknown = signed_in.post(path, data={"csrf_token": token, "reason": "bored"})
    error_pattern(unknown, {"reason": "Choose a reason for declining"})
    assert fhir.read("Task", task_id)[0]["status"] == "requested"

    fine = signed_in.post(path, data={"csrf_token": token, "reason": "not-now"})
    assert fine.status_code == 303
    flash = parse(signed_in.get("/review/").text).text["flash"]
    assert flash.startswith(f"Deferred Task/{task_id} (Not the right time; reconsider later): ")
    assert "deferred until 26 February 2027" in flash


@integration
def test_accept_needs_the_ips_service_configured_and_the_user_on_the_server(
    app_for, fhir_server: FhirTestServer, propose, fhir: FhirClient, tmp_path: Path
):
    _, task_id, sr_id = propose()
    agreed = {"patient_agreed": "yes"}
    unconfigured = app_for(fhir_server.base_url, referral=NO_REFERRAL)
    assert sign_in(unconfigured).status_code == 303
    token = csrf_of(unconfigured.get(f"/review/task/{task_id}").text)
    response = unconfigured.post(
        f"/review/task/{task_id}/accept", data={**agreed, "csrf_token": token}
    )
    assert response.status_code == 503
    assert "no IPS service configured" in response.text

    stranger = "Practitioner/not-on-the-server"
    (tmp_path / "u").mkdir()
    users = {"users_file": str(users_file(tmp_path / "u", {"dr": stranger}))}
    unknown = app_for(fhir_server.base_url, review_page=users)
    assert sign_in(unknown).status_code == 303
    token = csrf_of(unknown.get(f"/review/task/{task_id}").text)
    response = unknown.post(f"/review/task/{task_id}/accept", data={**agreed, "csrf_token": token})
    assert response.status_code == 403
    assert f"{stranger} not found on the FHIR server" in response.text
    declined = unknown.post(
        f"/review/task/{task_id}/decline", data={"csrf_token": token, "reason": "not-now"}
    )
    assert declined.status_code == 403
    assert fhir.read("Task", task_id)[0]["status"] == "requested"
    assert fhir.read("ServiceRequest", sr_id)[0]["status"] == "draft"


LEAFLET = {
    "practice_name": "Riverside Surgery",
    "practice_contact": "0113 496 0000, riverside.surgery@nhs.example",
    "service_name": "Leeds IPS Service",
    "service_contact": "0113 496 0999",
}


@integration
def test_the_printed_leaflet_names_patient_practice_service_and_date(
    app_for, fhir_server: FhirTestServer, fhir: FhirClient, propose, frozen_clock, caplog
):
    pid, task_id, _ = propose()
    patient, _ = fhir.read("Patient", pid)
    patient["name"] = [
        {"use": "old", "given": ["Ann"], "family": "Before"},
        {"use": "official", "given": ["Ann", "Marie"], "family": "Example"},
    ]
    fhir.update(patient)
    client = app_for(fhir_server.base_url, leaflet=LEAFLET)
    assert sign_in(client).status_code == 303
    caplog.set_level(logging.DEBUG, logger="ips_screen")
    response = client.get(f"/review/task/{task_id}")
    assert "Example" not in caplog.text  # shown to the clinician, never logged
    assert response.status_code == 200
    check_accessible(response.text)
    page = parse(response.text)
    leaflet = page.text["patient-explanation"]
    assert "About IPS employment support" in leaflet
    name = page.text["patient-name"]  # the identity reader's words for the official name
    assert "Ann Marie" in name and "Example".upper() in name.upper() and "Before" not in name
    assert f"For {name}" in leaflet and "Before" not in leaflet
    for words in (*LEAFLET.values(), "Your GP practice", "Date", "26 November 2026"):
        assert words in leaflet, words
    told = leaflet.split(f"For {name}", 1)[1].rsplit("Your GP practice", 1)[0]
    score = readability(told)
    assert score.reading_ease >= 70 and score.longest_sentence <= 20, score
    # The printout is this section alone (the print stylesheet hides everything else).
    assert "main > #patient-explanation { display: block !important; }" in response.text
