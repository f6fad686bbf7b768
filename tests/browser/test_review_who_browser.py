"""Who the patient is and their IPS history, in a real browser (issue 7, points 1, 2 and 6): the
GP signs in and lands on their own patients, finds one by NHS number typed with spaces, sees the
name, date of birth with age and NHS number, and the earlier decline in the history; accepts a
second patient's proposal with the patient's agreement confirmed and finds the referral in that
patient's history; then defers the first ("not now") and finds "deferred until" in the history.

Runs after test_review_page_browser.py (file order), which counts the proposals on the shared
browser FHIR server; the proposals loaded here are decided before the test ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from ips_screen.dates import LONDON
from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from ips_screen.service.app import create_app
from ips_screen.service.config import hash_password, parse_config
from tests.fhir_support import (
    earlier_decline,
    nhs_number_for,
    proposed_patient_records,
    put_people,
    strict_client,
    unique_patient_id,
    write_proposal,
)
from tests.support.people import IPS_SERVICE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
PASSWORD = "correct horse battery staple"
WAIT = 20


def test_find_by_nhs_number_see_who_and_history_then_defer(
    browser: Chrome,
    browser_fhir_server: FhirTestServer,
    browser_fhir_client: FhirClient,
    serve_app: Callable[[Callable[[str], object]], str],
    tmp_path: Path,
) -> None:
    pid = unique_patient_id("bw")
    resources = proposed_patient_records(pid)
    for resource in resources:
        browser_fhir_client.update(resource)
    task_id, _ = write_proposal(browser_fhir_client, pid, resources, now=NOW)
    earlier_decline(browser_fhir_client, pid)
    # a second patient of the same GP, to be referred with their agreement
    referred_pid = unique_patient_id("bw")
    referred_resources = proposed_patient_records(referred_pid)
    for resource in referred_resources:
        browser_fhir_client.update(resource)
    referred_task, _ = write_proposal(
        browser_fhir_client, referred_pid, referred_resources, now=NOW
    )
    put_people(browser_fhir_client, f"Practitioner/gp-{pid}")  # the GP and the IPS service
    number = nhs_number_for(pid)
    shown = f"{number[:3]} {number[3:6]} {number[6:]}"

    users = tmp_path / "users.txt"
    users.write_text(f"dr.gp:{hash_password(PASSWORD)}:Practitioner/gp-{pid}\n")
    environ = {"IPS_SCREEN_SESSION_SECRET": secrets.token_urlsafe(32)}
    app_client = strict_client(browser_fhir_server.base_url)

    def make_app(base_url: str) -> object:
        config = parse_config(
            {
                "public_base_url": base_url,
                "fhir": {"base_url": browser_fhir_server.base_url},
                "ehr_auth": {"disabled": True},
                "review_page": {"users_file": str(users)},
                "referral": {"ips_service": IPS_SERVICE},
            },
            tmp_path,
        )
        return create_app(config, fhir_client=app_client, clock=lambda: NOW, environ=environ)

    review_url = serve_app(make_app)
    wait = WebDriverWait(browser, WAIT)
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    try:
        browser.get(f"{review_url}/review/login")
        browser.find_element(By.ID, "username").send_keys("dr.gp")
        browser.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)

        # The list opens on the GP's own patients; find this one by NHS number, with spaces.
        wait.until(ec.url_matches(r"/review/?$"))
        search = wait.until(ec.visibility_of_element_located((By.ID, "q")))
        search.send_keys(shown + Keys.ENTER)
        wait.until(ec.url_contains("q="))
        (row,) = browser.find_elements(By.CSS_SELECTOR, "table#worklist tr[data-task]")
        assert row.get_attribute("data-task") == task_id
        for words in ("OKAFOR, Ada", "1980-01-01 (46 y)", shown):
            assert words in row.text, words

        # The patient's page: who they are, and the earlier decline in the history.
        row.find_element(By.CSS_SELECTOR, "a.open-task").click()
        wait.until(ec.url_contains(f"/review/task/{task_id}"))
        assert browser.find_element(By.ID, "patient-name").text == "OKAFOR, Ada"
        assert browser.find_element(By.ID, "patient-born").text == "1980-01-01 (46 years)"
        assert browser.find_element(By.ID, "patient-nhs-number").text == shown
        history = browser.find_element(By.ID, "history").text
        for words in ("declined", "Dr Alan Earlier", "Caring for a parent this year"):
            assert words in history, words

        # Another patient, found by NHS number: accepted with their agreement confirmed, and the
        # referral is then in their history.
        referred_number = nhs_number_for(referred_pid)
        browser.get(f"{review_url}/review/?scope=all")
        search = wait.until(ec.visibility_of_element_located((By.ID, "q")))
        search.send_keys(referred_number + Keys.ENTER)
        wait.until(ec.url_contains("q="))
        (row,) = browser.find_elements(By.CSS_SELECTOR, "table#worklist tr[data-task]")
        row.find_element(By.CSS_SELECTOR, "a.open-task").click()
        wait.until(ec.url_contains(f"/review/task/{referred_task}"))
        browser.find_element(By.ID, "patient-agreed").click()
        browser.find_element(By.ID, "accept").click()
        flash = wait.until(ec.visibility_of_element_located((By.ID, "flash")))
        assert "accepted" in flash.text.lower(), flash.text
        browser.get(f"{review_url}/review/task/{referred_task}")
        history = wait.until(ec.visibility_of_element_located((By.ID, "history"))).text
        assert "referred to IPS" in history, history

        # Back to the first patient. Not now: a deferral, shown as "deferred until" in the history.
        browser.get(f"{review_url}/review/task/{task_id}")
        form = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "form#decline-form")))
        Select(form.find_element(By.CSS_SELECTOR, "select#reason")).select_by_value("not-now")
        form.find_element(By.CSS_SELECTOR, "button#decline").click()
        wait.until(ec.visibility_of_element_located((By.ID, "flash")))
        browser.get(f"{review_url}/review/task/{task_id}")
        history = wait.until(ec.visibility_of_element_located((By.ID, "history"))).text
        assert "deferred until 26 February 2027" in history, history
    finally:
        app_client.close()
