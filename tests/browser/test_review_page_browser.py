"""The clinician review page in a real browser: sign in with the keyboard, see the worklist, open a
proposal, decline it with a reason and a note, and find the decline on the FHIR server.

The page is `ips-screen serve`'s app (ips_screen.service.app.create_app) run by uvicorn on
127.0.0.1, reading and writing the browser tests' own FHIR server, which holds exactly the two
proposals loaded here; the second is then accepted, leaving the worklist empty. Full-page
screenshots of the worklist and the task page go to the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from ips_screen.codes import DECLINE_REASON_SYSTEM
from ips_screen.fhir.client import FhirClient
from tests.fhir_support import Proposed, load_proposed_patient
from tests.support.browser_checks import screenshot
from tests.support.review_browser import NOW, PASSWORD, PRACTITIONER, USERNAME, WAIT, rows

pytestmark = pytest.mark.integration

NOTE = "Would rather wait until after knee surgery."


def propose(client: FhirClient) -> Proposed:
    """One patient's records PUT on the server, then the proposal transaction the screen would
    write for them."""
    return load_proposed_patient(client, "br", now=NOW)


def signed_by(client: FhirClient, task_id: str) -> set[str]:
    """Who the Provenance resources targeting the Task name as agents."""
    return {
        agent["who"].get("reference", "")
        for p in client.search("Provenance", {"target": f"Task/{task_id}"})
        if p.get("resourceType") == "Provenance"
        for agent in p.get("agent", [])
    }


def test_sign_in_decline_and_accept_proposals(
    browser: Chrome, review_url: str, browser_fhir_client: FhirClient, tmp_path: Path
) -> None:
    first, second = propose(browser_fhir_client), propose(browser_fhir_client)
    wait = WebDriverWait(browser, WAIT)
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # cookies ignore the port

    # Not signed in: the worklist sends the browser to the sign-in page.
    browser.get(f"{review_url}/review/")
    wait.until(ec.url_contains("/review/login"))
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))

    # Sign in with the keyboard only: type, Tab to the button, Enter.
    browser.find_element(By.ID, "username").send_keys(USERNAME)
    password = browser.find_element(By.ID, "password")
    password.send_keys(PASSWORD)
    password.send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "sign-in", "Tab from the password goes to Sign in"
    focused.send_keys(Keys.ENTER)

    # The worklist opens on the clinician's own patients (none here): switch to the whole
    # practice, which the list then keeps (e.g. after a decision).
    wait.until(ec.url_matches(r"/review/?$"))
    wait.until(ec.visibility_of_element_located((By.ID, "empty")))
    browser.find_element(By.ID, "scope-all").click()
    wait.until(ec.url_contains("scope=all"))
    wait.until(lambda b: len(rows(b)) == 2)
    listed = rows(browser)
    assert set(listed) == {first.task_id, second.task_id}
    for row in listed.values():
        assert row.find_element(By.CSS_SELECTOR, "a.open-task").is_displayed()
    assert not browser.find_elements(By.ID, "empty")
    screenshot(browser, tmp_path / "worklist.png")

    # Open the first proposal.
    listed[first.task_id].find_element(By.CSS_SELECTOR, "a.open-task").click()
    wait.until(ec.url_contains(f"/review/task/{first.task_id}"))
    timeline = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "section#timeline")))
    why = browser.find_element(By.ID, "why")
    assert timeline.text.strip(), "the timeline is empty"
    assert why.text.strip(), "#why is empty"
    assert browser.find_element(By.CSS_SELECTOR, "section#patient-explanation").text.strip()
    assert browser.find_element(By.CSS_SELECTOR, "form#accept-form button#accept").is_enabled()
    screenshot(browser, tmp_path / "task.png")

    # Decline: reason, note, button.
    form = browser.find_element(By.CSS_SELECTOR, "form#decline-form")
    Select(form.find_element(By.CSS_SELECTOR, "select#reason")).select_by_value("not-interested")
    form.find_element(By.CSS_SELECTOR, "textarea#note").send_keys(NOTE)
    form.find_element(By.CSS_SELECTOR, "button#decline").click()

    # Back on the worklist: a message about the decline, and only the other proposal left.
    flash = wait.until(ec.visibility_of_element_located((By.ID, "flash")))
    assert "declin" in flash.text.lower(), flash.text
    assert browser.current_url.rstrip("/").endswith("/review")
    wait.until(lambda b: set(rows(b)) == {second.task_id})
    screenshot(browser, tmp_path / "worklist-after-decline.png")

    # On the FHIR server: the Task rejected with the reason and note, the proposal revoked.
    task, _ = browser_fhir_client.read("Task", first.task_id)
    assert task["status"] == "rejected"
    (reason,) = task["statusReason"]["coding"]
    assert (reason["system"], reason["code"]) == (DECLINE_REASON_SYSTEM, "not-interested")
    assert task["note"][-1]["text"] == NOTE
    proposal, _ = browser_fhir_client.read("ServiceRequest", first.sr_id)
    assert proposal["status"] == "revoked"
    assert PRACTITIONER in signed_by(browser_fhir_client, first.task_id)
    untouched, _ = browser_fhir_client.read("Task", second.task_id)
    assert untouched["status"] == "requested"

    # Accept the other one: the worklist is then empty.
    rows(browser)[second.task_id].find_element(By.CSS_SELECTOR, "a.open-task").click()
    wait.until(ec.url_contains(f"/review/task/{second.task_id}"))
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "form#accept-form button#accept")))
    browser.find_element(By.ID, "accept").click()
    empty = wait.until(ec.visibility_of_element_located((By.ID, "empty")))
    assert "No open IPS proposals" in empty.text
    flash = browser.find_element(By.ID, "flash")
    assert "accepted" in flash.text.lower(), flash.text
    assert not rows(browser)
    screenshot(browser, tmp_path / "worklist-empty.png")
    accepted, _ = browser_fhir_client.read("Task", second.task_id)
    assert accepted["status"] == "completed"
    assert PRACTITIONER in signed_by(browser_fhir_client, second.task_id)
