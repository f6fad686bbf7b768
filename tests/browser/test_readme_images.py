"""The CDS card and the practice report as people see them, in the browser: screenshots at 1280
and 375 px for review (out/screenshots/, or $IPS_SCREEN_SCREENSHOTS), and with
IPS_SCREEN_README_IMAGES=1 (scripts/readme-images) the README's images in docs/images/.

The card comes from the service over HTTP (a patient-view hook with prefetch for fixture patient
fx-01), its markdown rendered by markdown-it-py into a page laid out like an EHR's card panel
(tests/support/cds_card_page.py). The report is report.html from `ips-screen screen` on the
fixture patients.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from ips_screen.cli.main import main
from tests.support.browser_checks import PageChecks, readme_image
from tests.support.cds import SERVICE, fixture_resources, hook_request, prefetch_of
from tests.support.cds_card_page import card_page
from tests.support.paths import FIXTURES
from tests.support.review_browser import WAIT

pytestmark = pytest.mark.integration

AS_OF = "2026-11-26"


@pytest.fixture
def checks(browser: Chrome, axe_js: str) -> PageChecks:
    return PageChecks(browser, axe_js)


def test_the_cds_card_reads_as_an_ehr_shows_it(
    browser: Chrome, review_url: str, checks: PageChecks, tmp_path: Path
) -> None:
    body = hook_request("fx-01", prefetch_of(fixture_resources("01")))
    with requests.Session() as http:
        http.trust_env = False  # 127.0.0.1 only, never through a proxy
        response = http.post(f"{review_url}{SERVICE}", json=body, timeout=WAIT)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    page = tmp_path / "card.html"
    page.write_text(card_page(card), encoding="utf-8")

    browser.get(page.as_uri())
    summary = WebDriverWait(browser, WAIT).until(
        ec.visibility_of_element_located((By.ID, "summary"))
    )
    assert summary.text == card["summary"]
    detail = browser.find_element(By.CSS_SELECTOR, ".detail")
    assert detail.find_elements(By.TAG_NAME, "p"), "the markdown detail was not rendered"
    assert "**" not in detail.text, "markdown emphasis shown as asterisks"
    checks.check("cds-card", axe=False)
    checks.assert_clean()
    readme_image(browser, "cds-card", 900)


def test_the_practice_report_as_the_practice_manager_sees_it(
    browser: Chrome, checks: PageChecks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["-q", "screen", str(FIXTURES), "--as-of", AS_OF, "--out", str(out)]) == 0
    capsys.readouterr()
    browser.get((out / "report.html").as_uri())
    WebDriverWait(browser, WAIT).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    # Checked by axe, and at 375 and 320 px: readable on a phone (issue 8, point 5).
    checks.check("report")
    checks.assert_clean()
    # The step-by-step chart's words scale with it: on a wide screen they stay near the body
    # text's size (before, twice it: 31 px against 16).
    sizes = browser.execute_script(
        "const label = document.querySelector('figure svg text');"
        "return [label.getBoundingClientRect().height,"
        " parseFloat(getComputedStyle(document.body).fontSize)];"
    )
    assert sizes[0] < 1.5 * sizes[1], sizes
    readme_image(browser, "report", 1100)
