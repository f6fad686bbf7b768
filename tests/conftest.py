"""Test-wide setup: a non-UTC local zone and a frozen clock, so no test depends on when or where
it runs; and the path to the shared Synthea data (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from ips_screen.dates import LONDON

# Deliberately far from UTC and from London: a test that silently uses local time will fail here.
os.environ["TZ"] = "Pacific/Auckland"
time.tzset()

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "fhir_fixtures"
FROZEN_NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)


@pytest.fixture(autouse=True)
def frozen_clock():
    """Every test runs at 2026-11-26 09:30 Europe/London (20:30 the same day in Auckland)."""
    import time_machine

    # A timestamp, not the aware datetime: time-machine would otherwise switch the local zone to
    # London while frozen, hiding code that wrongly uses local time.
    with time_machine.travel(FROZEN_NOW.timestamp(), tick=False) as traveller:
        yield traveller


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA
