"""Browser tests: a real headless Chromium driven by Selenium, a real FHIR server, and the review
web page served by uvicorn on 127.0.0.1.

Chromium and chromedriver come from Debian packages (/usr/bin/chromium, /usr/bin/chromedriver),
installed by `scripts/browser-deps` (which `scripts/test` runs); test tools cannot download their
own browser on the CI machine, and Selenium Manager is never used (`SE_OFFLINE=true`, explicit
paths). When they are missing the browser tests are skipped on a developer's machine but fail in
CI (`CI` set), so a broken install can never pass as a green run. The same holds for axe-core,
the accessibility checker injected into the pages (scripts/browser-deps fetches it from the npm
registry into .cache/axe/; tests/support/browser_checks.py runs it).

The FHIR server here is the browser tests' own, not the integration tests' shared one: the
worklist shows every open review on the server, so the page must not see other tests' proposals.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ips_screen.devtools.testserver import FhirTestServer
from ips_screen.fhir.client import FhirClient
from tests.fhir_support import running_test_server, strict_client
from tests.support.browser_checks import AXE_JS
from tests.support.review_browser import review_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # Chromium's sandbox cannot run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps opening connections to Google services; on a machine that may
    # only reach package indexes they are refused many at a time.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Shared memory in /tmp: a small /dev/shm (containers) crashes Chromium, and Debian's launcher
    # that would add this flag misreads /dev/shm when it is mounted twice.
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
SERVER_START_TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1", "localhost")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(message: str) -> None:
    """Skip on a developer's machine, fail in CI."""
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe-core's source (axe.min.js), to inject into pages."""
    if not AXE_JS.is_file():
        _missing(f"browser tests need axe-core at {AXE_JS}: run scripts/browser-deps to fetch it")
    return AXE_JS.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """A headless Chromium (1280x900, fresh empty profile) for the whole session."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        message = (
            f"browser tests need Chromium and chromedriver from Debian packages; missing: "
            f"{', '.join(missing)}. Run scripts/browser-deps (as root) to install them."
        )
        _missing(message)

    workdir = tmp_path_factory.mktemp("chromium")
    profile = workdir / "profile"
    profile.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(workdir / "chromedriver.log")
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium must never try to download a driver
        # Driver commands and pages are on 127.0.0.1: never through a proxy from the environment.
        for name in ("no_proxy", "NO_PROXY"):
            patch.setenv(name, ",".join(filter(None, [os.environ.get(name), *LOOPBACK])))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_window_size(*WINDOW)
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="session")
def browser_fhir_server() -> Iterator[FhirTestServer]:
    """The browser tests' own FHIR server (skipped only when its package index is unreachable,
    as for the integration tests)."""
    with running_test_server() as server:
        yield server


@pytest.fixture
def browser_fhir_client(browser_fhir_server: FhirTestServer) -> Iterator[FhirClient]:
    with strict_client(browser_fhir_server.base_url) as client:
        yield client


@pytest.fixture
def review_url(
    browser_fhir_server: FhirTestServer,
    serve_app: Callable[[Callable[[str], object]], str],
    tmp_path: Path,
) -> Iterator[str]:
    """The review app (tests/support/review_browser.py) on the browser tests' FHIR server,
    served on 127.0.0.1: its base URL."""
    with strict_client(browser_fhir_server.base_url) as app_client:
        yield serve_app(
            lambda base_url: review_app(
                base_url, browser_fhir_server.base_url, app_client, tmp_path
            )
        )


@pytest.fixture
def serve_app() -> Iterator[Callable[[Callable[[str], object]], str]]:
    """`serve_app(make_app)` runs `make_app(base_url)` with uvicorn in a background thread on
    127.0.0.1 and a free port, and returns the base URL; every server is stopped at teardown."""
    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(make_app: Callable[[str], object]) -> str:
        # Listening before the server thread starts: the port is ours (no free-port race) and a
        # browser that connects early just waits in the backlog until uvicorn accepts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            app = make_app(base_url)
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_config=None,  # leave the test session's logging alone
            log_level="warning",
            access_log=False,
            ws="none",
            lifespan="on",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn {base_url}", daemon=True
        )
        thread.start()
        running.append((server, thread, sock))
        waited = 0.0
        while not server.started:  # startup (lifespan) finished and the socket is served
            thread.join(0.05)
            waited += 0.05
            if not thread.is_alive():
                pytest.fail("the review app's server stopped during startup (see its log)")
            if waited > SERVER_START_TIMEOUT:
                pytest.fail(f"the review app did not start within {SERVER_START_TIMEOUT:.0f}s")
        return base_url

    yield serve
    for server, _, _ in running:
        server.should_exit = True
    for _, thread, sock in running:
        thread.join(SERVER_START_TIMEOUT)
        sock.close()
        assert not thread.is_alive(), f"{thread.name} did not stop"
