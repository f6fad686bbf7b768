"""Accessibility of the review page, checked in a real browser rather than assumed.

Every state the page can show (sign-in, sign-in error, an expired form (403), empty and full
worklist, a filter error, a task, a decline without a reason, after decline and after accept, a
decided task, a change by someone else (409), a proposal decided meanwhile, review not found) is
checked by
tests/support/browser_checks.py: axe-core at WCAG 2.2 AA finds no violation at 1280 and 320 px
wide, the page does not scroll sideways at 375 and 320 px, and screenshots at 1280 and 375 px go
to out/screenshots/ (or $IPS_SCREEN_SCREENSHOTS) for review. A keyboard test tabs through a task
page to the decision controls, in order, each with a visible focus indicator.

Each test decides every proposal it makes: the worklist shows every open review on the browser
tests' FHIR server, and the next test expects to see only its own.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from selenium.webdriver import ActionChains, Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from ips_screen import __version__
from ips_screen.fhir.client import FhirClient
from ips_screen.writeback import review
from tests.fhir_support import load_proposed_patient, strict_client
from tests.support.browser_checks import (
    NARROWEST,
    PageChecks,
    accessibility_tree,
    active_name,
    axe_violations,
    emulate_width,
    focus_indicator,
    horizontal_overflow,
    readme_image,
)
from tests.support.review_browser import NOW, PASSWORD, USERNAME, WAIT, rows

pytestmark = pytest.mark.integration

OTHER_CLINICIAN = "Practitioner/dr-other"
# The decision controls of an open task, in the order a keyboard user must reach them.
DECISION_CONTROLS = ("button#accept", "select#reason", "textarea#note", "button#decline")
MAX_TABS = 40


@pytest.fixture
def signed_out(browser: Chrome) -> Chrome:
    """The shared browser with no session from an earlier test (cookies ignore the port)."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return browser


@pytest.fixture
def checks(signed_out: Chrome, axe_js: str) -> PageChecks:
    return PageChecks(signed_out, axe_js)


def sign_in(browser: Chrome, review_url: str, password: str = PASSWORD) -> None:
    browser.get(f"{review_url}/review/login")
    WebDriverWait(browser, WAIT).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form"))
    )
    browser.find_element(By.ID, "username").send_keys(USERNAME)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "sign-in").click()


def open_task(browser: Chrome, review_url: str, task_id: str) -> None:
    browser.get(f"{review_url}/review/task/{task_id}")
    WebDriverWait(browser, WAIT).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))


def test_every_review_page_state_passes_axe_and_reflows(
    browser: Chrome,
    review_url: str,
    browser_fhir_client: FhirClient,
    checks: PageChecks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wait = WebDriverWait(browser, WAIT)

    browser.get(f"{review_url}/review/")
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))
    checks.check("sign-in")

    sign_in(browser, review_url, password="not the password")
    wait.until(ec.visibility_of_element_located((By.ID, "login-error")))
    checks.check("sign-in-error")

    # A form whose CSRF token does not match the session: 403, the error page without a user.
    browser.execute_script("document.querySelector('input[name=csrf_token]').value = 'stale'")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ec.visibility_of_element_located((By.ID, "error-message")))
    checks.check("form-expired")

    sign_in(browser, review_url)
    wait.until(ec.visibility_of_element_located((By.ID, "empty")))
    checks.check("worklist-empty")

    first, second, third = (
        load_proposed_patient(browser_fhir_client, "a11y", now=NOW) for _ in range(3)
    )
    browser.get(f"{review_url}/review/?scope=all")
    wait.until(lambda b: len(rows(b)) == 3)
    checks.check("worklist")
    # Reflowed into cards at 320 px, it is still a table to a screen reader, and a cell's name is
    # its value (the column header names it; the visible label is not read twice).
    columns = [
        (th.get_attribute("textContent") or "").strip()
        for th in browser.find_elements(By.CSS_SELECTOR, "table#worklist thead th")
    ]
    emulate_width(browser, NARROWEST)
    try:
        tree = accessibility_tree(browser)
    finally:
        emulate_width(browser, None)
    roles = [role for role, _ in tree]
    assert "table" in roles and roles.count("columnheader") == len(columns), roles
    cells = [name for role, name in tree if role == "cell"]
    assert len(cells) == 3 * len(columns), cells
    named_twice = [c for i, c in enumerate(cells) if c.startswith(columns[i % len(columns)] + " ")]
    assert not named_twice, cells

    browser.get(f"{review_url}/review/?owner=not-a-reference")
    wait.until(ec.visibility_of_element_located((By.ID, "filter-error")))
    checks.check("worklist-filter-error")

    open_task(browser, review_url, first.task_id)
    wait.until(ec.element_to_be_clickable((By.ID, "accept")))
    checks.check("task")
    readme_image(browser, "review-page", 1000)

    # The server's answer to a decline without a reason (the browser's own check removed).
    browser.execute_script("document.getElementById('reason').removeAttribute('required')")
    browser.find_element(By.ID, "decline").click()
    wait.until(ec.visibility_of_element_located((By.ID, "form-error")))
    checks.check("task-decline-error")

    Select(browser.find_element(By.ID, "reason")).select_by_value("not-interested")
    browser.find_element(By.ID, "decline").click()
    wait.until(ec.visibility_of_element_located((By.ID, "flash")))
    checks.check("after-decline")

    open_task(browser, review_url, first.task_id)
    assert not browser.find_elements(By.ID, "accept")
    checks.check("task-decided")

    open_task(browser, review_url, second.task_id)
    browser.find_element(By.ID, "accept").click()
    wait.until(ec.visibility_of_element_located((By.ID, "flash")))
    checks.check("after-accept")

    # Someone else changes the review between the page's read and its write: 409, nothing done.
    load_review = review.load_review

    def changed_meanwhile(client: FhirClient, task_id: str, **kwargs: object) -> review.Loaded:
        loaded = load_review(client, task_id, **kwargs)  # type: ignore[arg-type]
        note = {"text": "Phoned the patient: they will think about it."}
        with strict_client(client.base_url) as other:
            other.update({**loaded.task, "note": [*loaded.task.get("note", []), note]})
        return loaded

    open_task(browser, review_url, third.task_id)
    monkeypatch.setattr(review, "load_review", changed_meanwhile)
    browser.find_element(By.ID, "accept").click()
    wait.until(ec.visibility_of_element_located((By.ID, "conflict")))
    monkeypatch.undo()
    checks.check("conflict")

    # Another clinician decides it while this page is open: nothing changed, and the page says so.
    open_task(browser, review_url, third.task_id)
    review.accept(
        browser_fhir_client, third.task_id, by=OTHER_CLINICIAN, now=NOW, tool_version=__version__
    )
    browser.find_element(By.ID, "accept").click()
    flash = wait.until(ec.visibility_of_element_located((By.ID, "flash")))
    assert "already" in flash.text, flash.text
    checks.check("already-decided")

    browser.get(f"{review_url}/review/task/no-such-task")
    wait.until(ec.visibility_of_element_located((By.ID, "error-message")))
    checks.check("not-found")

    checks.assert_clean()
    for name in checks.checked:
        for width in ("1280", "375"):
            assert (checks.folder / f"{name}-{width}.png").is_file(), f"{name}-{width}.png"


def test_keyboard_reaches_the_decision_controls_in_order_with_visible_focus(
    signed_out: Chrome, review_url: str, browser_fhir_client: FhirClient
) -> None:
    browser = signed_out
    proposed = load_proposed_patient(browser_fhir_client, "a11y-kb", now=NOW)
    try:
        sign_in(browser, review_url)
        WebDriverWait(browser, WAIT).until(ec.url_matches(r"/review/?$"))
        open_task(browser, review_url, proposed.task_id)
        controls = {browser.find_element(By.CSS_SELECTOR, css).id: css for css in DECISION_CONTROLS}

        # From the top of the page, Tab by Tab: the skip link first, every stop visibly focused.
        reached: list[str] = []
        unfocused: list[str] = []
        for _ in range(MAX_TABS):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            name = active_name(browser)
            if focus_indicator(browser) is None:
                unfocused.append(name)
            active = browser.switch_to.active_element
            reached.append(controls.get(active.id, name))
            if reached[-1] == DECISION_CONTROLS[-1]:
                break
        assert reached[0] == "a.skip", f"the first Tab stop is not the skip link: {reached}"
        order = [stop for stop in reached if stop in DECISION_CONTROLS]
        assert order == list(DECISION_CONTROLS), f"Tab order: {reached}"
        assert not unfocused, f"no visible focus indicator on: {unfocused}"

        # The skip link moves the focus to the main content.
        open_task(browser, review_url, proposed.task_id)
        ActionChains(browser).send_keys(Keys.TAB).send_keys(Keys.ENTER).perform()
        assert active_name(browser) == "main#main"
    finally:
        review.decline(
            browser_fhir_client,
            proposed.task_id,
            by=OTHER_CLINICIAN,
            reason_code="not-interested",
            note=None,
            now=NOW,
            tool_version=__version__,
        )


def test_the_checks_find_what_they_look_for(browser: Chrome, axe_js: str) -> None:
    """axe-core really runs (an unlabelled field is a violation) and a page wider than the
    phone is found: a check that cannot fail would pass every state above."""
    page = (
        '<html lang="en"><meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>t</title><main><input><div style="width:900px">x</div></main>'
    )
    browser.get("data:text/html;charset=utf-8," + quote(page))
    assert any(p.startswith("label ") for p in axe_violations(browser, axe_js))
    emulate_width(browser, NARROWEST)
    try:
        assert horizontal_overflow(browser)
    finally:
        emulate_width(browser, None)
