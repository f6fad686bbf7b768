"""Test-wide setup: a non-UTC local zone and a frozen clock, so no test depends on when or where
it runs; the Hypothesis profile; the test tiers as marks (tests/support/tiers.py); and the path
to the shared Synthea data (tests that need it skip when it is absent); the `ips_screen` loggers
restored after each test."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from tests.support.hypothesis_profile import BadExampleCount, register_profile
from tests.support.paths import FROZEN_NOW, SHARED_DATA
from tests.support.tiers import UnknownTestFolder, folder_not_needed, tier_marks

# Deliberately far from UTC and from London: a test that silently uses local time will fail here.
os.environ["TZ"] = "Pacific/Auckland"
time.tzset()


def pytest_configure(config: pytest.Config) -> None:
    """Load the Hypothesis profile (its example count comes from the environment)."""
    try:
        register_profile()
    except BadExampleCount as error:
        raise pytest.UsageError(str(error)) from None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under `scripts/test --fast`, skip importing folders whose tests it would all deselect."""
    return True if folder_not_needed(collection_path, config.option.markexpr) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tiers: by folder, by the fixtures it uses, Hypothesis or not."""
    for item in items:
        hypothesis = getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        try:
            marks = tier_marks(item.path, getattr(item, "fixturenames", ()), hypothesis)
        except UnknownTestFolder as error:
            raise pytest.UsageError(str(error)) from None
        for mark in sorted(marks):
            item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(autouse=True)
def frozen_clock():
    """Every test runs at 2026-11-26 09:30 Europe/London (20:30 the same day in Auckland)."""
    import time_machine

    # A timestamp, not the aware datetime: time-machine would otherwise switch the local zone to
    # London while frozen, hiding code that wrongly uses local time.
    with time_machine.travel(FROZEN_NOW.timestamp(), tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def own_logging():
    """The `ips_screen` loggers as they were before the test: a command run by a test points
    them at that test's captured stderr (`log_setup.configure_logging`), which is closed once
    the test ends, and a later test's first log line would go there."""
    root = logging.getLogger("ips_screen")
    handlers, level, propagate = root.handlers[:], root.level, root.propagate
    yield
    root.handlers[:], root.level, root.propagate = handlers, level, propagate


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA
