"""The review page as the browser tests drive it: the one user who may sign in, the frozen
instant the app runs at, the app itself (`review_app`), and small page helpers."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from ips_screen.dates import LONDON
from ips_screen.fhir.client import FhirClient
from ips_screen.service.app import create_app
from ips_screen.service.config import hash_password, parse_config

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
USERNAME = "dr.review"
PASSWORD = "correct horse battery staple"
PRACTITIONER = "Practitioner/dr-review"
WAIT = 20  # seconds: the longest any page may take to show what a test waits for


def review_app(base_url: str, fhir_base_url: str, app_client: FhirClient, folder: Path) -> object:
    """`ips-screen serve`'s app at `base_url` on the FHIR server at `fhir_base_url`, with one
    user who may sign in (EHR authentication disabled: allowed on loopback, and the CDS Hooks
    side needs no token then). The app has its own FHIR client: it runs in the server's threads,
    a test's client in the test's."""
    users = folder / "users.txt"
    users.write_text(f"{USERNAME}:{hash_password(PASSWORD)}:{PRACTITIONER}\n")
    config = parse_config(
        {
            "public_base_url": base_url,
            "fhir": {"base_url": fhir_base_url},
            "ehr_auth": {"disabled": True},
            "review_page": {"users_file": str(users)},
        },
        folder,
    )
    environ = {"IPS_SCREEN_SESSION_SECRET": secrets.token_urlsafe(32)}
    return create_app(config, fhir_client=app_client, clock=lambda: NOW, environ=environ)


def rows(browser: Chrome) -> dict[str, WebElement]:
    """The worklist's rows by Task id."""
    return {
        row.get_attribute("data-task") or "": row
        for row in browser.find_elements(By.CSS_SELECTOR, "table#worklist tr[data-task]")
    }
